package bmc

import (
	"errors"
	"testing"

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
