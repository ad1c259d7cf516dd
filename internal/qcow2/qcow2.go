// Package qcow2 reads QEMU's qcow2 disk images (versions 2 and 3) and
// writes their guest-visible contents as a raw disk image.
//
// The header and tables come from outside (an image URL in a boot
// profile), so every size and offset is checked before it is used, and the
// features a plain reader cannot honour (backing files, encryption,
// external data files, extended L2 entries, zstd compression) are refused
// by name rather than read wrongly. Clusters that are unallocated or
// marked zero read as zeros: with no backing file that is their content.
package qcow2

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrUnsupported wraps the refusal of a feature this reader does not
// implement; the message names the feature.
var ErrUnsupported = errors.New("unsupported qcow2 feature")

// ErrCorrupt wraps a header or table that contradicts itself or the file.
var ErrCorrupt = errors.New("corrupt qcow2 image")

const (
	magic = 0x514649fb // "QFI\xfb"

	minClusterBits = 9
	maxClusterBits = 21
	// maxL1Bytes is QEMU's own bound on the L1 table (QCOW_MAX_L1_SIZE),
	// which also bounds the memory a hostile header can make us allocate.
	maxL1Bytes = 32 << 20
	// maxSize bounds the virtual disk: QEMU refuses more than 2^55 bytes
	// too, and an offset computed from it must not overflow.
	maxSize = 1 << 55

	v2HeaderLen = 72
	v3HeaderLen = 104

	offsetMask   = 0x00fffffffffffe00 // bits 9-55 of L1 and standard L2 entries
	l2Compressed = 1 << 62
	l2Zero       = 1
	// reservedL2 are the bits of a standard L2 entry that must be zero:
	// 1-8 and 56-61 (bit 62 is the compressed flag, 63 "copied").
	reservedL2 = 0x3f000000000001fe
	reservedL1 = 0x7f000000000001ff
)

// Incompatible feature bits (qcow2 v3), which a reader must understand.
var incompatible = []struct {
	bit  uint
	name string
	ok   bool // this reader can read an image with the bit set
}{
	{0, "dirty bit (refcounts need repair; data is intact)", true},
	{1, "corrupt bit (QEMU found the image inconsistent)", false},
	{2, "external data file", false},
	{3, "compression type", true}, // the type itself is checked below
	{4, "extended L2 entries (subclusters)", false},
}

// Image is an opened qcow2 image.
type Image struct {
	r           io.ReaderAt
	fileSize    int64
	version     uint32
	clusterBits uint32
	clusterSize int64
	size        int64
	l1          []uint64
	l2Entries   int64
}

// Open reads and checks the header and L1 table of the qcow2 image in r,
// a file of fileSize bytes.
func Open(r io.ReaderAt, fileSize int64) (*Image, error) {
	var h [v3HeaderLen + 1]byte
	n, err := r.ReadAt(h[:], 0)
	if n < v2HeaderLen {
		if err == nil || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: %d bytes is too short for a qcow2 header", ErrCorrupt, n)
		}
		return nil, fmt.Errorf("reading the qcow2 header: %w", err)
	}
	be := binary.BigEndian
	if be.Uint32(h[0:]) != magic {
		return nil, fmt.Errorf("%w: no qcow2 magic (QFI\\xfb) at the start of the file: is it really a qcow2 image?", ErrCorrupt)
	}
	im := &Image{r: r, fileSize: fileSize, version: be.Uint32(h[4:])}
	if im.version != 2 && im.version != 3 {
		return nil, fmt.Errorf("%w: qcow2 version %d (only versions 2 and 3 exist)", ErrUnsupported, im.version)
	}
	if be.Uint64(h[8:]) != 0 || be.Uint32(h[16:]) != 0 {
		return nil, fmt.Errorf("%w: backing file (the image is an overlay; flatten it with qemu-img convert -O qcow2 first)", ErrUnsupported)
	}
	im.clusterBits = be.Uint32(h[20:])
	if im.clusterBits < minClusterBits || im.clusterBits > maxClusterBits {
		return nil, fmt.Errorf("%w: cluster_bits %d is outside %d..%d", ErrCorrupt, im.clusterBits, minClusterBits, maxClusterBits)
	}
	im.clusterSize = 1 << im.clusterBits
	im.l2Entries = im.clusterSize / 8
	size := be.Uint64(h[24:])
	if size > maxSize {
		return nil, fmt.Errorf("%w: virtual size %d bytes is above 2^55", ErrCorrupt, size)
	}
	im.size = int64(size)
	if be.Uint32(h[32:]) != 0 {
		return nil, fmt.Errorf("%w: encryption (crypt_method %d); decrypt it with qemu-img convert first", ErrUnsupported, be.Uint32(h[32:]))
	}
	if im.version == 3 {
		if n < v3HeaderLen {
			return nil, fmt.Errorf("%w: %d bytes is too short for a version 3 header", ErrCorrupt, n)
		}
		if err := im.checkV3(h[:n]); err != nil {
			return nil, err
		}
	}
	l1Size := int64(be.Uint32(h[36:]))
	l1Off := int64(be.Uint64(h[40:]))
	need := (im.size + im.clusterSize*im.l2Entries - 1) / (im.clusterSize * im.l2Entries)
	switch {
	case l1Size*8 > maxL1Bytes:
		return nil, fmt.Errorf("%w: L1 table of %d entries is above QEMU's 32 MiB bound", ErrCorrupt, l1Size)
	case l1Size < need:
		return nil, fmt.Errorf("%w: L1 table of %d entries cannot map %d bytes (needs %d)", ErrCorrupt, l1Size, im.size, need)
	case l1Size > 0 && (l1Off <= 0 || l1Off%im.clusterSize != 0 || l1Off > fileSize-l1Size*8):
		return nil, fmt.Errorf("%w: L1 table offset %d is not a cluster boundary inside the %d-byte file", ErrCorrupt, l1Off, fileSize)
	}
	// Only the entries that map the virtual size are read: the rest may
	// hold anything.
	buf := make([]byte, need*8)
	if _, err := r.ReadAt(buf, l1Off); err != nil && need > 0 {
		return nil, fmt.Errorf("reading the qcow2 L1 table: %w", err)
	}
	im.l1 = make([]uint64, need)
	for i := range im.l1 {
		e := be.Uint64(buf[i*8:])
		if e&reservedL1 != 0 {
			return nil, fmt.Errorf("%w: L1 entry %d has reserved bits set (%#x)", ErrCorrupt, i, e)
		}
		im.l1[i] = e & offsetMask
		if int64(im.l1[i])%im.clusterSize != 0 {
			return nil, fmt.Errorf("%w: L1 entry %d points to an L2 table at %d, not a cluster boundary", ErrCorrupt, i, im.l1[i])
		}
	}
	return im, nil
}

func (im *Image) checkV3(h []byte) error {
	be := binary.BigEndian
	feat := be.Uint64(h[72:])
	for _, f := range incompatible {
		if feat&(1<<f.bit) == 0 {
			continue
		}
		feat &^= 1 << f.bit
		if !f.ok {
			return fmt.Errorf("%w: %s", ErrUnsupported, f.name)
		}
	}
	if feat != 0 {
		return fmt.Errorf("%w: unknown incompatible feature bits %#x (a newer QEMU's image)", ErrUnsupported, feat)
	}
	hlen := int64(be.Uint32(h[100:]))
	if hlen < v3HeaderLen || hlen%8 != 0 || hlen > im.clusterSize {
		return fmt.Errorf("%w: header length %d is not a multiple of 8 between %d and the cluster size", ErrCorrupt, hlen, v3HeaderLen)
	}
	compType := byte(0)
	if hlen > v3HeaderLen {
		if len(h) <= v3HeaderLen {
			return fmt.Errorf("%w: the header says it is %d bytes long, the file ends at %d", ErrCorrupt, hlen, len(h))
		}
		compType = h[v3HeaderLen]
	}
	switch compType {
	case 0: // deflate
	case 1:
		return fmt.Errorf("%w: zstd compression type (convert with qemu-img convert -O qcow2 -o compression_type=zlib, or to raw)", ErrUnsupported)
	default:
		return fmt.Errorf("%w: compression type %d", ErrUnsupported, compType)
	}
	if be.Uint64(h[72:])&(1<<3) != 0 && compType == 0 {
		return fmt.Errorf("%w: the compression type bit is set for the default type", ErrCorrupt)
	}
	return nil
}

// Size is the virtual disk's size in bytes: the raw image's length.
func (im *Image) Size() int64 { return im.size }

// ClusterSize is the image's cluster size in bytes.
func (im *Image) ClusterSize() int64 { return im.clusterSize }

// WriteRaw writes the guest-visible disk to dst at the same offsets, and
// every byte of it, in order, to sum (a hash). Clusters that read as
// zeros are not written, so dst should be a new, empty file, which the
// caller then truncates to Size: the result is sparse.
func (im *Image) WriteRaw(dst io.WriterAt, sum io.Writer) error {
	cs := im.clusterSize
	zero := make([]byte, cs)
	data := make([]byte, cs)
	l2 := make([]byte, cs)
	be := binary.BigEndian
	for i, l2Off := range im.l1 {
		base := int64(i) * im.l2Entries * cs
		if l2Off != 0 {
			if err := im.readCluster(l2, int64(l2Off), "L2 table"); err != nil {
				return err
			}
		}
		for j := int64(0); j < im.l2Entries && base+j*cs < im.size; j++ {
			guest := base + j*cs
			n := min(cs, im.size-guest)
			var e uint64
			if l2Off != 0 {
				e = be.Uint64(l2[j*8:])
			}
			isData, err := im.cluster(e, data[:n], guest)
			if err != nil {
				return err
			}
			out := zero[:n]
			if isData && !bytes.Equal(data[:n], zero[:n]) {
				out = data[:n]
				if _, err := dst.WriteAt(out, guest); err != nil {
					return fmt.Errorf("writing the raw image at %d: %w", guest, err)
				}
			}
			if _, err := sum.Write(out); err != nil {
				return err
			}
		}
	}
	return nil
}

// cluster reads the guest cluster an L2 entry maps into buf (the part of
// it inside the virtual size); false means it reads as zeros.
func (im *Image) cluster(e uint64, buf []byte, guest int64) (bool, error) {
	if e&l2Compressed != 0 {
		return true, im.compressed(e, buf, guest)
	}
	if e&reservedL2 != 0 {
		return false, fmt.Errorf("%w: L2 entry for guest offset %d has reserved bits set (%#x)", ErrCorrupt, guest, e)
	}
	if e&l2Zero != 0 {
		if im.version < 3 {
			return false, fmt.Errorf("%w: zero cluster flag at guest offset %d in a version 2 image", ErrCorrupt, guest)
		}
		return false, nil
	}
	off := int64(e & offsetMask)
	if off == 0 {
		return false, nil
	}
	if off%im.clusterSize != 0 {
		return false, fmt.Errorf("%w: data cluster for guest offset %d at %d is not cluster-aligned", ErrCorrupt, guest, off)
	}
	return true, im.readCluster(buf, off, "data cluster")
}

// compressed inflates a compressed cluster (raw deflate, as QEMU writes
// it) into buf.
func (im *Image) compressed(e uint64, buf []byte, guest int64) error {
	x := 62 - (im.clusterBits - 8)
	off := int64(e & (1<<x - 1))
	sectors := int64((e>>x)&(1<<(62-x)-1)) + 1
	n := sectors*512 - off%512
	if off <= 0 || off >= im.fileSize {
		return fmt.Errorf("%w: compressed cluster for guest offset %d at %d is outside the %d-byte file", ErrCorrupt, guest, off, im.fileSize)
	}
	// QEMU counts whole sectors, which may run past the file's end.
	n = min(n, im.fileSize-off)
	fr := flate.NewReader(io.NewSectionReader(im.r, off, n))
	defer fr.Close()
	if _, err := io.ReadFull(fr, buf); err != nil {
		return fmt.Errorf("%w: compressed cluster for guest offset %d at %d does not inflate to %d bytes: %v", ErrCorrupt, guest, off, len(buf), err)
	}
	return nil
}

// readCluster reads len(buf) bytes at off; the part past the file's end
// reads as zeros, as QEMU reads it, but a cluster must start inside.
func (im *Image) readCluster(buf []byte, off int64, what string) error {
	if off <= 0 || off >= im.fileSize {
		return fmt.Errorf("%w: %s at %d is outside the %d-byte file", ErrCorrupt, what, off, im.fileSize)
	}
	n, err := im.r.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading the qcow2 %s at %d: %w", what, off, err)
	}
	clear(buf[n:])
	return nil
}
