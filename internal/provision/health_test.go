package provision

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/bmc"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// TestBMCHealth: bmc_status is read from the bmc package's error values:
// a 401/403 is a refused login, no HTTP answer or a gateway error an
// unreachable BMC, anything else a BMC that answered.
func TestBMCHealth(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"login refused", &bmc.Error{Op: "login", StatusCode: 401, Msg: "login refused"}, model.BMCStatusAuthFailed},
		{"access denied", &bmc.Error{Op: "power", StatusCode: 403}, model.BMCStatusAuthFailed},
		{"connection refused", &bmc.Error{Op: "power_state", Err: refused}, model.BMCStatusUnreachable},
		{"no HTTP answer", &bmc.Error{Op: "inventory", Msg: "tls: handshake failure"}, model.BMCStatusUnreachable},
		{"timeout", fmt.Errorf("polling: %w", context.DeadlineExceeded), model.BMCStatusUnreachable},
		{"gateway", &bmc.Error{Op: "power", StatusCode: 503}, model.BMCStatusUnreachable},
		{"server error", &bmc.Error{Op: "power", StatusCode: 500}, model.BMCStatusOK},
		{"unsupported", &bmc.Error{Op: "power", Err: bmc.ErrUnsupported}, model.BMCStatusOK},
		{"override reverted", &bmc.Error{Op: "boot_override", Err: bmc.ErrOverrideReverted}, model.BMCStatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, bmcHealth(tc.err))
		})
	}
}

// TestInventoryJitter: re-reads of machines registered together spread
// over a tenth of the period, each machine keeping its own offset.
func TestInventoryJitter(t *testing.T) {
	const every = 10 * time.Hour
	seen := map[time.Duration]bool{}
	for i := range 50 {
		name := fmt.Sprintf("m%d", i)
		j := inventoryJitter(name, every)
		assert.GreaterOrEqual(t, j, time.Duration(0))
		assert.Less(t, j, every/10)
		assert.Equal(t, j, inventoryJitter(name, every), "stable per machine")
		seen[j] = true
	}
	assert.Greater(t, len(seen), 40, "machines spread out")
	assert.Zero(t, inventoryJitter("m", 5))
}
