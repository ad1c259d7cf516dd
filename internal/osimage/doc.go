// Package osimage holds the boot test of the lab's real operating system
// image, the Debian 12 disk image that scripts/build-os-image.sh builds
// (`make os-image`). The test boots that one image under SeaBIOS and under
// OVMF, each with a NoCloud config drive like the one the deploy side writes,
// on an isolated network, and reads the serial console to see the kernel,
// cloud-init and the login prompt.
package osimage
