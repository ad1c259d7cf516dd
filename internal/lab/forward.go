package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// RunForward is `baremetal-agent lab-forward HOST:PORT`, the program QEMU
// runs for each guest connection to the boot URL (a guestfwd "cmd:"): it
// relays the connection, which QEMU hands it as stdin and stdout, to the
// agent's boot address on the host. A guestfwd to a socket would carry one
// connection for the VM's whole life; iPXE and the installers open many.
func RunForward(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 1 {
		return errors.New("lab-forward: usage: lab-forward HOST:PORT")
	}
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := d.DialContext(dctx, "tcp", args[0])
	cancel()
	if err != nil {
		return fmt.Errorf("lab-forward: %w", err)
	}
	defer conn.Close()
	go func() {
		// The guest's half-close reaches the agent as one; the reply still
		// flows back until the agent closes.
		_, _ = io.Copy(conn, stdin)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	// Once the agent has closed, so must the guest's side, which QEMU keeps
	// open for as long as this process lives: a client reading to EOF
	// would otherwise wait forever.
	_, _ = io.Copy(stdout, conn)
	return nil
}
