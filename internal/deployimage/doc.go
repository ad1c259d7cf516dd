// Package deployimage boots the agent's deploy ramdisk
// (scripts/build-deploy-image.sh, deploy-image/init) in QEMU against a fake
// agent that speaks the ramdisk's protocol (FakeAgent, VM): its tests read
// the virtual disk the ramdisk wrote, and the deploy benchmark
// (bench/cmd/bootbench -only deploy) times it. The ramdisk itself is a
// busybox script, not Go.
package deployimage
