package boot

import (
	"encoding/binary"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// unackedAnswers sends one read request from a fresh socket on src (a
// loopback address) and never acknowledges: it returns the opcode and
// block (or error code) of every datagram the server sends back within
// wait, as a spoofed source's victim would receive them.
func unackedAnswers(t *testing.T, server, src string, request []byte, wait time.Duration) [][2]uint16 {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)})
	require.NoError(t, err)
	defer c.Close()
	to, err := net.ResolveUDPAddr("udp", server)
	require.NoError(t, err)
	_, err = c.WriteToUDP(request, to)
	require.NoError(t, err)
	var got [][2]uint16
	buf := make([]byte, 70000)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
	for {
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			return got
		}
		if n >= 4 {
			op, arg := binary.BigEndian.Uint16(buf), binary.BigEndian.Uint16(buf[2:])
			if op == opOACK {
				arg = 0 // option text, not a number
			}
			got = append(got, [2]uint16{op, arg})
		}
	}
}

func rrqPacket(file, mode string, opts ...string) []byte { //nolint:unparam // a packet builder: the file named in each case reads as the request it is
	p := append([]byte{0, 1}, file+"\x00"...)
	if mode != "-" {
		p = append(p, mode+"\x00"...)
	}
	for _, o := range opts {
		p = append(p, o+"\x00"...)
	}
	return p
}

const (
	opDATA  = 3
	opERROR = 5
	opOACK  = 6
)

// TestTFTPUnacknowledgedRequestCost: what a request nobody acknowledges
// (a forged source) makes the server send: at most three copies of the
// first datagram and nothing else, never a window, and nothing but one error
// for a request without a valid mode.
func TestTFTPUnacknowledgedRequestCost(t *testing.T) {
	fx := newTFTPFixture(t)
	st := openTestStore(t)
	for _, tc := range []struct {
		name    string
		window  uint
		request []byte
		want    [][2]uint16
	}{
		{"plain", 0, rrqPacket("undionly.kpxe", "octet"), [][2]uint16{{opDATA, 1}, {opDATA, 1}, {opDATA, 1}}},
		{"options", 0, rrqPacket("undionly.kpxe", "octet", "blksize", "1468", "tsize", "0"), [][2]uint16{{opOACK, 0}, {opOACK, 0}, {opOACK, 0}}},
		{"window, no options", 16, rrqPacket("undionly.kpxe", "OCTET"), [][2]uint16{{opDATA, 1}, {opDATA, 1}, {opDATA, 1}}},
		{"window, options", 16, rrqPacket("undionly.kpxe", "octet", "blksize", "512"), [][2]uint16{{opOACK, 0}, {opOACK, 0}, {opOACK, 0}}},
		{"no mode", 0, rrqPacket("undionly.kpxe", "-"), [][2]uint16{{opERROR, 4}}},
		{"empty mode", 0, rrqPacket("undionly.kpxe", ""), [][2]uint16{{opERROR, 4}}},
		{"mail mode", 0, rrqPacket("undionly.kpxe", "mail"), [][2]uint16{{opERROR, 4}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Config{TFTPRoot: fx.root, BootURL: "http://127.0.0.1:1", Logger: quietLogger(),
				TFTPTimeout: 50 * time.Millisecond, TFTPAnticipate: tc.window}, st, StoreSecrets(st), newRecordingLifecycle(st))
			require.NoError(t, err)
			addr := startTFTP(t, s)
			// 50ms, 100ms and 200ms gaps: everything is sent within 350ms.
			require.Equal(t, tc.want, unackedAnswers(t, addr, "127.0.0.1", tc.request, time.Second))
		})
	}
}

// TestTFTPTransferCaps: a request beyond the per-address or the global cap
// is answered with one error and no transfer; when half the global cap
// waits for a first ACK, a new request ends the oldest waiting transfer
// instead of being refused.
func TestTFTPTransferCaps(t *testing.T) {
	fx := newTFTPFixture(t)
	st := openTestStore(t)
	s, err := New(Config{TFTPRoot: fx.root, BootURL: "http://127.0.0.1:1", Logger: quietLogger(), TFTPTimeout: 2 * time.Second,
		TFTPMaxTransfers: 4, TFTPMaxPerClient: 1}, st, StoreSecrets(st), newRecordingLifecycle(st))
	require.NoError(t, err)
	addr := startTFTP(t, s)
	to, err := net.ResolveUDPAddr("udp", addr)
	require.NoError(t, err)
	type client struct {
		conn *net.UDPConn
		buf  []byte
	}
	open := func(src string) client {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)})
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = c.WriteToUDP(rrqPacket("undionly.kpxe", "octet"), to)
		require.NoError(t, err)
		return client{conn: c, buf: make([]byte, 2048)}
	}
	first := func(c client) (op, arg uint16, from *net.UDPAddr) {
		require.NoError(t, c.conn.SetReadDeadline(time.Now().Add(time.Second)))
		n, from, err := c.conn.ReadFromUDP(c.buf)
		require.NoError(t, err)
		require.GreaterOrEqual(t, n, 4)
		return binary.BigEndian.Uint16(c.buf), binary.BigEndian.Uint16(c.buf[2:]), from
	}
	// ack acknowledges block 1 and waits for block 2, so the server has
	// seen the ACK (and taken the transfer out of the pending pool) before
	// the test goes on.
	ack := func(c client, to *net.UDPAddr) {
		_, err := c.conn.WriteToUDP([]byte{0, 4, 0, 1}, to)
		require.NoError(t, err)
		op, block, _ := first(c)
		require.Equal(t, [2]uint16{opDATA, 2}, [2]uint16{op, block})
	}

	// Two clients that acknowledge: running transfers, out of the pending pool.
	a := open("127.0.0.1")
	op, _, fromA := first(a)
	require.Equal(t, uint16(opDATA), op)
	ack(a, fromA)
	op, code, _ := first(open("127.0.0.1"))
	require.Equal(t, [2]uint16{opERROR, 0}, [2]uint16{op, code}, "a second transfer for one address (cap 1)")
	b := open("127.0.0.2")
	op, _, fromB := first(b)
	require.Equal(t, uint16(opDATA), op)
	ack(b, fromB)

	// Two silent clients fill the global cap (4) and the pending pool (2).
	c1 := open("127.0.0.3")
	op, _, _ = first(c1)
	require.Equal(t, uint16(opDATA), op)
	c2 := open("127.0.0.4")
	op, _, fromC2 := first(c2)
	require.Equal(t, uint16(opDATA), op)
	op, code, _ = first(open("127.0.0.5"))
	require.Equal(t, [2]uint16{opERROR, 0}, [2]uint16{op, code}, "a fifth transfer (global cap 4)")

	// b gives up, freeing a place: the next request is admitted and, the
	// pending pool being full, ends c1's wait at once (its first re-send
	// would come after 2s).
	bye := func(c client, to *net.UDPAddr) {
		_, err := c.conn.WriteToUDP(append([]byte{0, opERROR, 0, 0}, "bye\x00"...), to)
		require.NoError(t, err)
	}
	bye(b, fromB)
	start := time.Now()
	var d client
	var fromD *net.UDPAddr
	for i := 6; fromD == nil && i < 60; i++ {
		d = open("127.0.0." + strconv.Itoa(i))
		if op, _, from := first(d); op == opDATA {
			fromD = from
		}
	}
	require.NotNil(t, fromD, "no request admitted after b ended")
	op, code, _ = first(c1)
	require.Equal(t, [2]uint16{opERROR, 1}, [2]uint16{op, code}, "c1 evicted")
	require.Less(t, time.Since(start), 1500*time.Millisecond, "c1 waited for its timeout instead of being evicted")
	// End the others, so the server's shutdown need not wait them out.
	bye(a, fromA)
	bye(c2, fromC2)
	bye(d, fromD)
}
