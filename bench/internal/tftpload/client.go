// Package tftpload is a lean TFTP read client (RFC 1350 with the RFC 2347
// option negotiation and RFC 2348 blksize) for load generation. It is not
// pin/tftp's client on purpose: the client shares the CPUs with the server
// under test, so it does as little as possible per block (one read, one
// compare against the expected bytes, one ACK) and keeps no per-block
// allocations.
package tftpload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

const (
	opRRQ   = 1
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// Options tunes one transfer.
type Options struct {
	// BlockSize is requested with the blksize option; 0 or 512 sends no
	// options at all (plain RFC 1350), as a minimal PXE ROM does.
	BlockSize int
	// Timeout is how long to wait for the next packet before re-sending
	// the last ACK (or the request); Retries how many times in a row.
	Timeout time.Duration
	Retries int
	// Loss drops this fraction (0 to 1) of the DATA packets the client
	// receives and of the ACKs it would send, as a lossy link in both
	// directions would; Seed makes the drops reproducible. The request is
	// never dropped, so a loss is always one the server must recover from
	// within the transfer.
	Loss float64
	Seed uint64
}

// Result describes one finished transfer.
type Result struct {
	Bytes    int64
	Duration time.Duration
	// Resends counts re-sent requests and ACKs (lost or late packets).
	Resends int
	// Dropped counts DATA packets and ACKs that Loss discarded.
	Dropped int
}

// Get reads file from the server at addr (host:port) and checks every byte
// against want. The server answers from a new port (its transfer ID), which
// the client then talks to exclusively.
func Get(addr, file string, want []byte, o Options) (Result, error) {
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Retries <= 0 {
		o.Retries = 5
	}
	blk := 512
	if o.BlockSize > 0 {
		blk = o.BlockSize
	}
	server, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return Result{}, err
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: server.IP.To4()})
	if err != nil {
		return Result{}, err
	}
	defer conn.Close()

	req := []byte{0, opRRQ}
	req = append(append(req, file...), 0)
	req = append(append(req, "octet"...), 0)
	if blk != 512 {
		req = append(append(req, "blksize"...), 0)
		req = append(append(req, strconv.Itoa(blk)...), 0)
	}

	start := time.Now()
	var res Result
	buf := make([]byte, 65536)
	ack := []byte{0, opACK, 0, 0}
	dest := server
	var tid *net.UDPAddr // the server's transfer port, once known
	var received int64
	expect := uint16(1)
	tries := 0
	// Drops are decided per packet identity (which copy of which block),
	// not by a stream of draws, so a seed loses the same packets however
	// the timeouts of client and server interleave.
	var dataCopies, ackCopies int
	// sendACK puts the current ACK on the wire unless the link loses it.
	sendACK := func() error {
		ackCopies++
		if o.Loss > 0 && lost(o.Seed, opACK, received, ackCopies, o.Loss) {
			res.Dropped++
			return nil
		}
		_, err := conn.WriteToUDP(ack, dest)
		return err
	}

	if _, err := conn.WriteToUDP(req, dest); err != nil {
		return res, err
	}
	for {
		if err := conn.SetReadDeadline(time.Now().Add(o.Timeout)); err != nil {
			return res, err
		}
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				tries++
				if tries > o.Retries {
					return res, fmt.Errorf("tftp %s %s: no answer after %d retries at byte %d", addr, file, o.Retries, received)
				}
				res.Resends++
				if tid == nil { // the request, which the link never loses
					_, err = conn.WriteToUDP(req, dest)
				} else {
					err = sendACK()
				}
				if err != nil {
					return res, err
				}
				continue
			}
			return res, err
		}
		if tid != nil && (from.Port != tid.Port || !from.IP.Equal(tid.IP)) {
			continue // a stray packet from another transfer ID
		}
		if n < 4 {
			continue
		}
		pkt := buf[:n]
		switch binary.BigEndian.Uint16(pkt) {
		case opERROR:
			msg := pkt[4:]
			if i := bytes.IndexByte(msg, 0); i >= 0 {
				msg = msg[:i]
			}
			return res, fmt.Errorf("tftp %s %s: server error %d: %s", addr, file, binary.BigEndian.Uint16(pkt[2:]), msg)
		case opOACK:
			if tid != nil || received > 0 {
				continue
			}
			got, err := oackBlockSize(pkt[2:])
			if err != nil {
				abort(conn, from, "bad OACK")
				return res, fmt.Errorf("tftp %s %s: %w", addr, file, err)
			}
			if got > 0 {
				blk = got
			}
			tid, dest = from, from
			ack[2], ack[3] = 0, 0
			tries = 0
			if err := sendACK(); err != nil {
				return res, err
			}
		case opDATA:
			if tid == nil {
				// DATA without an OACK: the server ignored the options
				// (RFC 2347), so blocks are the default 512 bytes.
				blk = 512
				tid, dest = from, from
			}
			if binary.BigEndian.Uint16(pkt[2:]) != expect {
				// Out of order or a duplicate: the timeout re-sends our last
				// ACK, and ACKing duplicates would start the Sorcerer's
				// Apprentice cascade.
				continue
			}
			dataCopies++
			if o.Loss > 0 && lost(o.Seed, opDATA, received, dataCopies, o.Loss) {
				res.Dropped++
				continue
			}
			data := pkt[4:]
			if len(data) > blk {
				abort(conn, dest, "block larger than negotiated")
				return res, fmt.Errorf("tftp %s %s: block %d carries %d bytes, negotiated %d", addr, file, expect, len(data), blk)
			}
			end := received + int64(len(data))
			if end > int64(len(want)) || !bytes.Equal(data, want[received:end]) {
				abort(conn, dest, "unexpected data")
				return res, fmt.Errorf("tftp %s %s: wrong data in block %d (byte %d)", addr, file, expect, received)
			}
			received = end
			binary.BigEndian.PutUint16(ack[2:], expect)
			dataCopies, ackCopies = 0, 0
			tries = 0
			if err := sendACK(); err != nil {
				return res, err
			}
			// Block numbers wrap to 0 after 65535 in every server measured
			// here (the 32 MiB file at 512 bytes needs 65537 blocks).
			expect++
			if len(data) < blk {
				res.Bytes = received
				res.Duration = time.Since(start)
				if received != int64(len(want)) {
					return res, fmt.Errorf("tftp %s %s: got %d bytes, want %d", addr, file, received, len(want))
				}
				return res, nil
			}
		}
	}
}

// lost reports whether the simulated link loses the nth copy of the
// packet of kind that carries (DATA) or acknowledges (ACK) the bytes up to
// offset: a splitmix64 hash of the four, compared with loss.
func lost(seed uint64, kind uint16, offset int64, nth int, loss float64) bool {
	x := seed ^ uint64(kind)<<56 ^ uint64(offset)<<8 ^ uint64(nth)
	x += 0x9E3779B97F4A7C15
	x = (x ^ x>>30) * 0xBF58476D1CE4E5B9
	x = (x ^ x>>27) * 0x94D049BB133111EB
	x ^= x >> 31
	return float64(x>>11)/(1<<53) < loss
}

// abort ends a transfer the client gives up on with an ERROR packet, as
// RFC 1350 asks, so the server frees it at once instead of re-sending until
// its own timeout.
func abort(conn *net.UDPConn, to *net.UDPAddr, msg string) {
	pkt := append([]byte{0, opERROR, 0, 0}, msg...)
	_, _ = conn.WriteToUDP(append(pkt, 0), to) // best effort: a lost one costs the server its timeout, nothing more
}

// oackBlockSize returns the blksize an OACK grants (0 when it names none).
func oackBlockSize(opts []byte) (int, error) {
	fields := bytes.Split(bytes.TrimSuffix(opts, []byte{0}), []byte{0})
	for i := 0; i+1 < len(fields); i += 2 {
		if string(bytes.ToLower(fields[i])) == "blksize" {
			n, err := strconv.Atoi(string(fields[i+1]))
			if err != nil || n < 8 || n > 65464 {
				return 0, fmt.Errorf("OACK grants an invalid blksize %q", fields[i+1])
			}
			return n, nil
		}
	}
	return 0, nil
}
