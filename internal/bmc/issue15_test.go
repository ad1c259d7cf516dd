package bmc

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
)

// TestBootModeUnderRevert: a BMC that flips the mode to Legacy after every
// PATCH is answered with the desired mode again, never with the read-back
// one, and the error names the field and what it reverted to.
func TestBootModeUnderRevert(t *testing.T) {
	for _, tc := range []struct {
		name   string
		asked  BootMode
		want   string // the mode every PATCH must carry
		revert bool
	}{
		{"kept UEFI, reverting BMC", BootModeKeep, "UEFI", true},
		{"asked UEFI, reverting BMC", BootModeUEFI, "UEFI", true},
		{"asked Legacy of a UEFI system", BootModeLegacy, "Legacy", false},
		{"kept UEFI, healthy BMC", BootModeKeep, "UEFI", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, inv, _ := startLab(t, 1)
			sys := l.System(inv[0].Name)
			require.Equal(t, "UEFI", sys.BootOverride().Mode)
			l.SetFault(inv[0].Name, lab.Fault{RevertModeToLegacy: tc.revert})
			m := NewManager(testConfig())
			c := labBMC(inv[0])
			for range 3 { // as the reconciler's step retries would
				err := m.SetBootOverride(testCtx(t), c, BootPXE, false, tc.asked)
				if !tc.revert {
					require.NoError(t, err)
					continue
				}
				require.ErrorIs(t, err, ErrOverrideReverted)
				assert.Contains(t, err.Error(), `BootSourceOverrideMode to "Legacy" (sent "UEFI")`)
			}
			got := sys.Counts().PatchedModes
			require.Len(t, got, 3)
			for _, mode := range got {
				assert.Equal(t, tc.want, mode)
			}
		})
	}
}

func TestBootModeNotAllowable(t *testing.T) {
	mock, c := dmtf(t, nil)
	mock.boot["BootSourceOverrideMode@Redfish.AllowableValues"] = []string{"UEFI"}
	err := NewManager(testConfig()).SetBootOverride(testCtx(t), c, BootPXE, false, BootModeLegacy)
	require.ErrorIs(t, err, ErrUnsupported)
	assert.Contains(t, err.Error(), "boot mode Legacy (it allows UEFI)")
	_, patches, _ := mock.snapshot()
	assert.Empty(t, patches)

	require.NoError(t, NewManager(testConfig()).SetBootOverride(testCtx(t), c, BootPXE, false, BootModeUEFI))
	_, patches, _ = mock.snapshot()
	require.Len(t, patches, 1)
	assert.Equal(t, "UEFI", patches[0].Body["Boot"].(map[string]any)["BootSourceOverrideMode"])
}

// TestBootModeKeepNeverSendsLegacyToUEFI: a system reporting UEFI is never
// sent Legacy unless asked, even once a revert made it report Legacy.
func TestBootModeKeepNeverSendsLegacyToUEFI(t *testing.T) {
	l, inv, _ := startLab(t, 1)
	m := NewManager(testConfig())
	c := labBMC(inv[0])
	l.SetFault(inv[0].Name, lab.Fault{RevertModeToLegacy: true})
	err := m.SetBootOverride(testCtx(t), c, BootPXE, false, BootModeKeep)
	require.True(t, errors.Is(err, ErrOverrideReverted), "%v", err)
	l.SetFault(inv[0].Name, lab.Fault{})
	require.Equal(t, "Legacy", l.System(inv[0].Name).BootOverride().Mode)
	require.NoError(t, m.SetBootOverride(testCtx(t), c, BootDisk, false, BootModeKeep))
	assert.Equal(t, []string{"UEFI", "UEFI"}, l.System(inv[0].Name).Counts().PatchedModes)
	assert.Equal(t, "UEFI", l.System(inv[0].Name).BootOverride().Mode)
}

// TestWrongPasswordBacksOff: one login per try, never retried through
// basic auth, and the tries that reach the BMC are spaced by a doubling
// wait; another password is tried at once.
func TestWrongPasswordBacksOff(t *testing.T) {
	var mu sync.Mutex
	var posts []time.Time
	mock, c := dmtf(t, func(mock *mockBMC, w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/Sessions") {
			mu.Lock()
			posts = append(posts, time.Now())
			mu.Unlock()
		}
		return false
	})
	cfg := testConfig()
	cfg.LoginBackoff, cfg.LoginBackoffMax = 40*time.Millisecond, time.Second
	m := NewManager(cfg)
	c.Password = "wrong-password"
	nPosts := func() int { mu.Lock(); defer mu.Unlock(); return len(posts) }

	tries := 0
	for nPosts() < 4 {
		before := nPosts()
		_, err := m.PowerState(testCtx(t), c)
		tries++
		require.ErrorIs(t, err, ErrLoginRefused)
		assert.False(t, IsRetryable(err))
		assert.LessOrEqual(t, nPosts()-before, 1, "one login per try")
		if nPosts() == before {
			assert.Contains(t, err.Error(), "next attempt in")
		} else {
			assert.Contains(t, err.Error(), fmt.Sprintf("login refused (401): check the username and password; %s in the last 1 minute", plural(nPosts(), "attempt")))
		}
		time.Sleep(5 * time.Millisecond) // a caller's own retry pace
	}
	assert.Greater(t, tries, 4, "tries within the backoff never reached the BMC")
	mu.Lock()
	for i := 1; i < len(posts); i++ {
		assert.GreaterOrEqual(t, posts[i].Sub(posts[i-1]), cfg.LoginBackoff<<(i-1), "gap %d", i)
	}
	mu.Unlock()
	mock.mu.Lock()
	assert.Empty(t, mock.auths, "no request with the refused credentials through basic auth")
	mock.mu.Unlock()

	c.Password = "pw-1234"
	_, err := m.PowerState(testCtx(t), c)
	require.NoError(t, err, "a corrected password is tried at once")
}
