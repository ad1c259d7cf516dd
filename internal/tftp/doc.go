// Package tftp is the server side of github.com/pin/tftp/v3 v3.2.0 (MIT,
// see LICENSE), copied so it can be patched; the commit after the copy is
// the whole patch. The library offers no way to bound what a read request
// with a forged source costs, so the patch adds: SetAdmission (refuse a
// request before a socket, file or goroutine is spent on it), a mode check
// (RFC 1350 requires one), SetFirstAckRetries and no sender window before
// the client's first ACK, SetMaxPending (unacknowledged transfers give way
// to new requests), and no error datagram to a peer that never answered.
// The client side stays upstream's (the tests and benchmarks use it).
package tftp
