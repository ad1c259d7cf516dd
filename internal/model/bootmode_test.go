package model

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestBootModeRefusal(t *testing.T) {
	for _, tt := range []struct {
		name string
		mode BootMode
		inv  *Inventory
		want string
	}{
		{"unset keeps the BMC's mode", "", &Inventory{BootModes: []string{"legacy"}}, ""},
		{"not inspected yet", BootModeUEFI, nil, ""},
		{"BMC lists nothing", BootModeUEFI, &Inventory{BootMode: "legacy"}, ""},
		{"allowed", BootModeUEFI, &Inventory{BootModes: []string{"legacy", "uefi"}}, ""},
		{"refused", BootModeUEFI, &Inventory{BootModes: []string{"legacy"}}, `boot_mode "uefi" is not offered by the BMC, which allows legacy`},
		{"refused legacy on UEFI-only", BootModeLegacy, &Inventory{BootModes: []string{"uefi"}}, `boot_mode "legacy" is not offered by the BMC, which allows uefi`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := BootModeRefusal(tt.mode, tt.inv)
			if tt.want == "" {
				assert.Empty(t, got)
				return
			}
			assert.Contains(t, got, tt.want)
		})
	}
}
