package provision

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

func TestChooseRootDisk(t *testing.T) {
	yes, no := true, false
	disks := []model.SeenDisk{
		{Name: "sdb", SizeBytes: 4000 * gib, Model: "ST4000NM", Serial: "Z1", Rotational: true},
		{Name: "nvme0n1", SizeBytes: 960 * gib, Model: "SAMSUNG MZ7L3960", Serial: "S5", WWN: "eui.0025"},
		{Name: "sda", SizeBytes: 240 * gib, Model: "INTEL SSDSC2KB24", Serial: "BTYF"},
	}
	for _, tt := range []struct {
		name  string
		hints *model.RootDeviceHints
		image int64
		want  string
		err   string
	}{
		{"no hints: the smallest", nil, 0, "sda", ""},
		{"no hints: the smallest that holds the image", nil, 500 * gib, "nvme0n1", ""},
		{"name with /dev/", &model.RootDeviceHints{Name: "/dev/sdb"}, 0, "sdb", ""},
		{"model, case and spaces ignored", &model.RootDeviceHints{Model: " samsung mz7l3960"}, 0, "nvme0n1", ""},
		{"serial", &model.RootDeviceHints{Serial: "Z1"}, 0, "sdb", ""},
		{"wwn", &model.RootDeviceHints{WWN: "eui.0025"}, 0, "nvme0n1", ""},
		{"min size", &model.RootDeviceHints{MinSizeGiB: 500}, 0, "nvme0n1", ""},
		{"max size", &model.RootDeviceHints{MaxSizeGiB: 300}, 0, "sda", ""},
		{"rotational", &model.RootDeviceHints{Rotational: &yes}, 0, "sdb", ""},
		{"not rotational and big", &model.RootDeviceHints{Rotational: &no, MinSizeGiB: 300}, 0, "nvme0n1", ""},
		{"every hint must match", &model.RootDeviceHints{Rotational: &yes, MaxSizeGiB: 1000}, 0, "",
			"no disk matches root_device {max_size_gib=1000, rotational=true}; disks seen: sdb 4000.0 GiB ST4000NM Z1 rotational; nvme0n1 960.0 GiB SAMSUNG MZ7L3960 S5 eui.0025; sda 240.0 GiB INTEL SSDSC2KB24 BTYF"},
		{"image too large for the hinted disk", &model.RootDeviceHints{Name: "sda"}, 300 * gib, "", "no disk matches root_device {name=sda} and holds the image (322122547200 bytes)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := chooseRootDisk(tt.hints, disks, tt.image)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got.Name)
		})
	}
	_, err := chooseRootDisk(nil, nil, 0)
	require.ErrorContains(t, err, "disks seen: none")
}
