// Package deployimage holds the tests of the agent's deploy ramdisk
// (scripts/build-deploy-image.sh, deploy-image/init): they boot it in QEMU
// against a fake agent that speaks the ramdisk's protocol, and read the
// virtual disk it wrote. The ramdisk itself is a busybox script, not Go.
package deployimage
