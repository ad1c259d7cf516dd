package provider

import (
	"regexp"

	"github.com/hashicorp/terraform-plugin-framework-validators/float64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/objectvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	dschema "github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// Image deploys: a profile's image and the root device hints of profiles
// and machines, in one place for the resources and data sources.

var imageAttrTypes = map[string]attr.Type{
	"url":      types.StringType,
	"checksum": types.StringType,
	"format":   types.StringType,
	"wipe":     types.StringType,
}

var rootDeviceAttrTypes = map[string]attr.Type{
	"name":         types.StringType,
	"min_size_gib": types.Float64Type,
	"max_size_gib": types.Float64Type,
	"model":        types.StringType,
	"serial":       types.StringType,
	"wwn":          types.StringType,
	"rotational":   types.BoolType,
}

const (
	imageDescription = "An OS image to deploy instead of booting an installer: the agent's deploy ramdisk streams it to the root disk " +
		"(chosen by `root_device`) while verifying its checksum, never leaving a half-written disk bootable, then writes a NoCloud " +
		"config drive (a `CIDATA` partition) with the machine's rendered `user-data` (the profile's template, else the stock " +
		"`cloud-init-image`, which calls back from the deployed OS), `meta-data` and, if the profile has one, `network-config`. " +
		"The agent then boots the disk; the machine is provisioned when the deployed OS calls back. " +
		"On deprovision (destroy, or `state = \"available\"`) the deploy ramdisk boots again to remove the config drive, and to wipe what `wipe` says, " +
		"before the machine is released; a failed clean fails the machine instead (`force_destroy` skips it). " +
		"Conflicts with `kernel`, `initrds`, `ipxe_script` and `wipe_profile`."
	rootDeviceDescription = "Root device hints choosing the disk an image is written to, as Ironic's: every hint given must match. " +
		"Without hints, the smallest disk that holds the image. When no disk matches, the machine fails with the hints and the disks the ramdisk saw."
)

func imageSchema() schema.SingleNestedAttribute {
	return schema.SingleNestedAttribute{
		MarkdownDescription: imageDescription,
		Optional:            true,
		Validators: []validator.Object{
			objectvalidator.ConflictsWith(path.MatchRoot("kernel"), path.MatchRoot("initrds"), path.MatchRoot("ipxe_script"), path.MatchRoot("wipe_profile")),
		},
		Attributes: map[string]schema.Attribute{
			"url": schema.StringAttribute{
				MarkdownDescription: "Where the image is: a path under the agent's assets directory (served by the agent; the choice for machines that reach nothing else) or an `http(s)` URL the ramdisk fetches directly.",
				Required:            true,
				Validators:          []validator.String{stringvalidator.LengthAtLeast(1)},
			},
			"checksum": schema.StringAttribute{
				MarkdownDescription: "Checksum of the file at `url`: `sha256:<64 hex digits>` or `sha512:<128 hex digits>` (e.g. from `sha256sum`). A mismatch fails the machine and leaves its disk unbootable.",
				Required:            true,
				Validators: []validator.String{stringvalidator.RegexMatches(regexp.MustCompile(`^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$`),
					"must be sha256:<64 lower-case hex digits> or sha512:<128 lower-case hex digits>")},
			},
			"format": schema.StringAttribute{
				MarkdownDescription: "What the file at `url` holds: " + quotedList(api.ImageFormats, " or ") + ". A raw disk image, or one compressed " +
					"with gzip or zstd, is streamed by the ramdisk straight to the disk. A `qcow2` image (version 2 or 3, deflate-compressed clusters " +
					"allowed; no backing file, encryption, external data file, extended L2 entries or zstd compression) is fetched once by the agent, " +
					"which checks `checksum`, converts it to raw in its data directory (one conversion for every machine deploying it) and serves " +
					"the raw image to the ramdisk; the agent needs room for the raw disk (sparse). Convert other formats with `qemu-img convert -O raw`.",
				Required:   true,
				Validators: []validator.String{stringvalidator.OneOf(api.ImageFormats...)},
			},
			"wipe": schema.StringAttribute{
				MarkdownDescription: "What deprovisioning erases from the disk the image went to (found again by the root device hints), " +
					"with the deploy ramdisk, before the machine is powered off and released: `config-drive` (the default) zeroes the config " +
					"drive partition and removes it, so the OS can never run its `user-data`, secrets included, again; `metadata` also zeroes " +
					"the first and last MiB of every partition (filesystem, RAID and LVM signatures) and both partition tables, like Ironic's " +
					"metadata erase; `full` zeroes the whole disk, like Ironic's full erase (allow for it in the destroy timeout: about the " +
					"disk's size at its write speed). Other disks are left alone. A `desired state = \"off\"` keeps the disk as it is.",
				Optional:   true,
				Computed:   true,
				Default:    stringdefault.StaticString(api.WipeConfigDrive),
				Validators: []validator.String{stringvalidator.OneOf(api.ImageWipes...)},
			},
		},
	}
}

func rootDeviceSchema(desc string) schema.SingleNestedAttribute {
	return schema.SingleNestedAttribute{
		MarkdownDescription: desc,
		Optional:            true,
		Attributes: map[string]schema.Attribute{
			"name":         schema.StringAttribute{MarkdownDescription: "Kernel name of the disk, e.g. `sda` or `/dev/nvme0n1`.", Optional: true},
			"min_size_gib": schema.Float64Attribute{MarkdownDescription: "Smallest disk size, in GiB.", Optional: true, Validators: []validator.Float64{float64validator.AtLeast(0)}},
			"max_size_gib": schema.Float64Attribute{MarkdownDescription: "Largest disk size, in GiB.", Optional: true, Validators: []validator.Float64{float64validator.AtLeast(0)}},
			"model":        schema.StringAttribute{MarkdownDescription: "Disk model, as the disk reports it (case and surrounding spaces ignored).", Optional: true},
			"serial":       schema.StringAttribute{MarkdownDescription: "Disk serial number.", Optional: true},
			"wwn":          schema.StringAttribute{MarkdownDescription: "Disk World Wide Name.", Optional: true},
			"rotational":   schema.BoolAttribute{MarkdownDescription: "`true` for spinning disks, `false` for SSDs and NVMe.", Optional: true},
		},
	}
}

func imageDataSchema() dschema.SingleNestedAttribute {
	str := func(d string) dschema.StringAttribute {
		return dschema.StringAttribute{MarkdownDescription: d, Computed: true}
	}
	return dschema.SingleNestedAttribute{
		MarkdownDescription: "The image the profile deploys, if any.",
		Computed:            true,
		Attributes: map[string]dschema.Attribute{
			"url":      str("Where the image is."),
			"checksum": str("Its checksum."),
			"format":   str("Its format."),
			"wipe":     str("What deprovisioning erases from the disk."),
		},
	}
}

func rootDeviceDataSchema() dschema.SingleNestedAttribute {
	str := func(d string) dschema.StringAttribute {
		return dschema.StringAttribute{MarkdownDescription: d, Computed: true}
	}
	gib := func(d string) dschema.Float64Attribute {
		return dschema.Float64Attribute{MarkdownDescription: d, Computed: true}
	}
	return dschema.SingleNestedAttribute{
		MarkdownDescription: "The profile's root device hints, if any.",
		Computed:            true,
		Attributes: map[string]dschema.Attribute{
			"name": str("Kernel name."), "min_size_gib": gib("Smallest size, GiB."), "max_size_gib": gib("Largest size, GiB."),
			"model": str("Model."), "serial": str("Serial number."), "wwn": str("World Wide Name."),
			"rotational": dschema.BoolAttribute{MarkdownDescription: "Spinning disk or not.", Computed: true},
		},
	}
}

func imageFromObject(o types.Object) *api.Image {
	if o.IsNull() || o.IsUnknown() {
		return nil
	}
	a := o.Attributes()
	return &api.Image{URL: strAttr(a["url"]), Checksum: strAttr(a["checksum"]), Format: strAttr(a["format"]), Wipe: strAttr(a["wipe"])}
}

func imageObject(img *api.Image) types.Object {
	if img == nil {
		return types.ObjectNull(imageAttrTypes)
	}
	wipe := img.Wipe
	if wipe == "" {
		wipe = api.WipeConfigDrive
	}
	return types.ObjectValueMust(imageAttrTypes, map[string]attr.Value{
		"url": types.StringValue(img.URL), "checksum": types.StringValue(img.Checksum), "format": types.StringValue(img.Format),
		"wipe": types.StringValue(wipe),
	})
}

func rootDeviceFromObject(o types.Object) *api.RootDeviceHints {
	if o.IsNull() || o.IsUnknown() {
		return nil
	}
	a := o.Attributes()
	h := &api.RootDeviceHints{Name: strAttr(a["name"]), Model: strAttr(a["model"]), Serial: strAttr(a["serial"]), WWN: strAttr(a["wwn"])}
	if v, ok := a["min_size_gib"].(types.Float64); ok && !v.IsNull() {
		h.MinSizeGiB = v.ValueFloat64()
	}
	if v, ok := a["max_size_gib"].(types.Float64); ok && !v.IsNull() {
		h.MaxSizeGiB = v.ValueFloat64()
	}
	if v, ok := a["rotational"].(types.Bool); ok && !v.IsNull() {
		b := v.ValueBool()
		h.Rotational = &b
	}
	return h
}

func rootDeviceObject(h *api.RootDeviceHints) types.Object {
	if h == nil {
		return types.ObjectNull(rootDeviceAttrTypes)
	}
	gib := func(v float64) types.Float64 {
		if v == 0 {
			return types.Float64Null()
		}
		return types.Float64Value(v)
	}
	rot := types.BoolNull()
	if h.Rotational != nil {
		rot = types.BoolValue(*h.Rotational)
	}
	return types.ObjectValueMust(rootDeviceAttrTypes, map[string]attr.Value{
		"name": optString(h.Name), "min_size_gib": gib(h.MinSizeGiB), "max_size_gib": gib(h.MaxSizeGiB),
		"model": optString(h.Model), "serial": optString(h.Serial), "wwn": optString(h.WWN), "rotational": rot,
	})
}

func strAttr(v attr.Value) string {
	if s, ok := v.(types.String); ok {
		return s.ValueString()
	}
	return ""
}
