package provision

import (
	"fmt"
	"sort"
	"strings"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

const gib = 1 << 30

// chooseRootDisk picks the disk an image is written to: among the disks
// every hint matches (all of them when there are no hints), the smallest
// that holds the image (imageBytes 0: size unknown), so a large data disk
// is not taken for the OS when a small one fits, as Ironic's agent does.
// The error names the hints and every disk seen, which is what an operator
// needs to fix the hints.
func chooseRootDisk(h *model.RootDeviceHints, disks []model.SeenDisk, imageBytes int64) (model.SeenDisk, error) {
	var fit []model.SeenDisk
	for _, d := range disks {
		if hintsMatch(h, d) && d.SizeBytes >= imageBytes {
			fit = append(fit, d)
		}
	}
	if len(fit) == 0 {
		seen := make([]string, 0, len(disks))
		for _, d := range disks {
			seen = append(seen, describeDisk(d))
		}
		if len(seen) == 0 {
			seen = append(seen, "none")
		}
		need := ""
		if imageBytes > 0 {
			need = fmt.Sprintf(" and holds the image (%d bytes)", imageBytes)
		}
		return model.SeenDisk{}, fmt.Errorf("no disk matches root_device %s%s; disks seen: %s", describeHints(h), need, strings.Join(seen, "; "))
	}
	sort.SliceStable(fit, func(i, j int) bool {
		if fit[i].SizeBytes != fit[j].SizeBytes {
			return fit[i].SizeBytes < fit[j].SizeBytes
		}
		return fit[i].Name < fit[j].Name
	})
	return fit[0], nil
}

func hintsMatch(h *model.RootDeviceHints, d model.SeenDisk) bool {
	if h == nil {
		return true
	}
	eq := func(want, got string) bool {
		return want == "" || strings.EqualFold(strings.TrimSpace(want), strings.TrimSpace(got))
	}
	size := float64(d.SizeBytes) / gib
	switch {
	case h.Name != "" && strings.TrimPrefix(h.Name, "/dev/") != d.Name,
		!eq(h.Model, d.Model), !eq(h.Serial, d.Serial), !eq(h.WWN, d.WWN),
		h.MinSizeGiB > 0 && size < h.MinSizeGiB,
		h.MaxSizeGiB > 0 && size > h.MaxSizeGiB,
		h.Rotational != nil && *h.Rotational != d.Rotational:
		return false
	}
	return true
}

func describeHints(h *model.RootDeviceHints) string {
	if h == nil {
		return "(no hints)"
	}
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("name", h.Name)
	if h.MinSizeGiB > 0 {
		add("min_size_gib", fmt.Sprint(h.MinSizeGiB))
	}
	if h.MaxSizeGiB > 0 {
		add("max_size_gib", fmt.Sprint(h.MaxSizeGiB))
	}
	add("model", h.Model)
	add("serial", h.Serial)
	add("wwn", h.WWN)
	if h.Rotational != nil {
		add("rotational", fmt.Sprint(*h.Rotational))
	}
	if len(parts) == 0 {
		return "(no hints)"
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func describeDisk(d model.SeenDisk) string {
	s := fmt.Sprintf("%s %.1f GiB", d.Name, float64(d.SizeBytes)/gib)
	for _, v := range []string{d.Model, d.Serial, d.WWN} {
		if v = strings.TrimSpace(v); v != "" {
			s += " " + v
		}
	}
	if d.Rotational {
		s += " rotational"
	}
	return s
}
