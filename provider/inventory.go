package provider

import (
	"github.com/hashicorp/terraform-plugin-framework/attr"
	dschema "github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	rschema "github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/objectplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// invField is one attribute of the computed `inventory` object. The machine
// resource and both machine data sources build their schemas from the one
// list below, so names, types and descriptions cannot drift apart; the
// attribute types come from it too, and inventoryValue panics on a key the
// list lacks.
type invField struct {
	name   string
	desc   string
	typ    attr.Type  // scalar, or a list of strings
	nested []invField // set for a list of objects; typ is then nil
}

var nicFields = []invField{
	{name: "name", typ: types.StringType, desc: "Interface name as the BMC reports it."},
	{name: "mac", typ: types.StringType, desc: "MAC address, lower-case colon form."},
}

var diskFields = []invField{
	{name: "name", typ: types.StringType, desc: "Drive name as the BMC reports it."},
	{name: "size_gib", typ: types.Float64Type, desc: "Capacity in GiB."},
	{name: "model", typ: types.StringType, desc: "Drive model."},
	{name: "serial", typ: types.StringType, desc: "Drive serial number."},
	{name: "media_type", typ: types.StringType, desc: "Media type as the BMC reports it (`HDD`, `SSD`, `SMR`); empty when it does not say."},
	{name: "rotational", typ: types.BoolType, desc: "Whether the drive spins: media type `HDD` or `SMR`, or a rotation speed above zero. " +
		"Also false when the BMC reports neither; check `media_type`."},
}

var inventoryFields = []invField{
	{name: "manufacturer", typ: types.StringType, desc: "System manufacturer."},
	{name: "model", typ: types.StringType, desc: "System model."},
	{name: "serial", typ: types.StringType, desc: "Serial number."},
	{name: "cpus", typ: types.Int64Type, desc: "Number of CPUs (populated sockets). GPUs and other accelerators are not counted here; see `gpus` and `accelerators`."},
	{name: "cpu_model", typ: types.StringType, desc: "Model of the first CPU."},
	{name: "cpu_cores", typ: types.Int64Type, desc: "Cores over all CPUs; 0 when the BMC does not report them."},
	{name: "cpu_threads", typ: types.Int64Type, desc: "Hardware threads over all CPUs; 0 when the BMC does not report them."},
	{name: "gpus", typ: types.Int64Type, desc: "Number of GPUs the BMC lists as processors."},
	{name: "gpu_model", typ: types.StringType, desc: "Model of the first GPU; empty without one."},
	{name: "accelerators", typ: types.Int64Type, desc: "Number of FPGAs, DSPs and other non-GPU accelerators the BMC lists as processors."},
	{name: "accelerator_model", typ: types.StringType, desc: "Model of the first accelerator; empty without one."},
	{name: "memory_gib", typ: types.Float64Type, desc: "Installed memory in GiB."},
	{name: "nics", nested: nicFields, desc: "Network interfaces of the host (not the BMC's own, nor VLANs)."},
	{name: "disks", nested: diskFields, desc: "Drives, each listed once however many controllers link it."},
	{name: "boot_mode", typ: types.StringType, desc: "Firmware boot mode the BMC reports, `uefi` or `legacy`; empty when it does not say."},
	{name: "boot_modes", typ: types.ListType{ElemType: types.StringType},
		desc: "Boot modes the BMC accepts for a boot override (`uefi`, `legacy`); empty when it does not list them."},
	{name: "fingerprint", typ: types.StringType,
		desc: "Hash of what identifies the hardware (CPUs, memory, GPUs and accelerators, disks, NIC MACs) in this inventory. " +
			"The agent reads the inventory again before each power-on and on a slow schedule; on a `baremetal_machine`, " +
			"a fingerprint other than `hardware_fingerprint` is hardware drift, shown in the next plan."},
}

const inventoryDescription = "Hardware inventory read from the BMC; null until the machine has been inspected."

var (
	nicAttrTypes       = invAttrTypes(nicFields)
	diskAttrTypes      = invAttrTypes(diskFields)
	inventoryAttrTypes = invAttrTypes(inventoryFields)
)

func invAttrTypes(fields []invField) map[string]attr.Type {
	out := make(map[string]attr.Type, len(fields))
	for _, f := range fields {
		out[f.name] = f.attrType()
	}
	return out
}

func (f invField) attrType() attr.Type {
	if f.nested != nil {
		return types.ListType{ElemType: types.ObjectType{AttrTypes: invAttrTypes(f.nested)}}
	}
	return f.typ
}

// inventoryResourceAttribute is the machine resource's `inventory`: kept from
// state while a plan cannot know it, as only the agent's next read changes it.
func inventoryResourceAttribute() rschema.SingleNestedAttribute {
	return rschema.SingleNestedAttribute{
		MarkdownDescription: inventoryDescription,
		Computed:            true,
		PlanModifiers:       []planmodifier.Object{objectplanmodifier.UseStateForUnknown()},
		Attributes:          resourceAttrs(inventoryFields),
	}
}

func resourceAttrs(fields []invField) map[string]rschema.Attribute {
	out := make(map[string]rschema.Attribute, len(fields))
	for _, f := range fields {
		switch t := f.typ; {
		case f.nested != nil:
			out[f.name] = rschema.ListNestedAttribute{MarkdownDescription: f.desc, Computed: true,
				NestedObject: rschema.NestedAttributeObject{Attributes: resourceAttrs(f.nested)}}
		case t.Equal(types.StringType):
			out[f.name] = rschema.StringAttribute{MarkdownDescription: f.desc, Computed: true}
		case t.Equal(types.Int64Type):
			out[f.name] = rschema.Int64Attribute{MarkdownDescription: f.desc, Computed: true}
		case t.Equal(types.Float64Type):
			out[f.name] = rschema.Float64Attribute{MarkdownDescription: f.desc, Computed: true}
		case t.Equal(types.BoolType):
			out[f.name] = rschema.BoolAttribute{MarkdownDescription: f.desc, Computed: true}
		default:
			out[f.name] = rschema.ListAttribute{MarkdownDescription: f.desc, Computed: true, ElementType: t.(types.ListType).ElemType}
		}
	}
	return out
}

func inventoryDataSourceAttribute() dschema.SingleNestedAttribute {
	return dschema.SingleNestedAttribute{
		MarkdownDescription: inventoryDescription,
		Computed:            true,
		Attributes:          dataSourceAttrs(inventoryFields),
	}
}

func dataSourceAttrs(fields []invField) map[string]dschema.Attribute {
	out := make(map[string]dschema.Attribute, len(fields))
	for _, f := range fields {
		switch t := f.typ; {
		case f.nested != nil:
			out[f.name] = dschema.ListNestedAttribute{MarkdownDescription: f.desc, Computed: true,
				NestedObject: dschema.NestedAttributeObject{Attributes: dataSourceAttrs(f.nested)}}
		case t.Equal(types.StringType):
			out[f.name] = dschema.StringAttribute{MarkdownDescription: f.desc, Computed: true}
		case t.Equal(types.Int64Type):
			out[f.name] = dschema.Int64Attribute{MarkdownDescription: f.desc, Computed: true}
		case t.Equal(types.Float64Type):
			out[f.name] = dschema.Float64Attribute{MarkdownDescription: f.desc, Computed: true}
		case t.Equal(types.BoolType):
			out[f.name] = dschema.BoolAttribute{MarkdownDescription: f.desc, Computed: true}
		default:
			out[f.name] = dschema.ListAttribute{MarkdownDescription: f.desc, Computed: true, ElementType: t.(types.ListType).ElemType}
		}
	}
	return out
}

func inventoryValue(inv *api.Inventory) types.Object {
	if inv == nil {
		return types.ObjectNull(inventoryAttrTypes)
	}
	nics := make([]attr.Value, len(inv.NICs))
	for i, n := range inv.NICs {
		nics[i] = types.ObjectValueMust(nicAttrTypes, map[string]attr.Value{
			"name": types.StringValue(n.Name),
			"mac":  types.StringValue(n.MAC),
		})
	}
	disks := make([]attr.Value, len(inv.Disks))
	for i, d := range inv.Disks {
		disks[i] = types.ObjectValueMust(diskAttrTypes, map[string]attr.Value{
			"name":       types.StringValue(d.Name),
			"size_gib":   types.Float64Value(d.SizeGiB),
			"model":      types.StringValue(d.Model),
			"serial":     types.StringValue(d.Serial),
			"media_type": types.StringValue(d.MediaType),
			"rotational": types.BoolValue(d.Rotational),
		})
	}
	modes := make([]attr.Value, len(inv.BootModes))
	for i, m := range inv.BootModes {
		modes[i] = types.StringValue(m)
	}
	return types.ObjectValueMust(inventoryAttrTypes, map[string]attr.Value{
		"manufacturer":      types.StringValue(inv.Manufacturer),
		"model":             types.StringValue(inv.Model),
		"serial":            types.StringValue(inv.Serial),
		"cpus":              types.Int64Value(int64(inv.CPUs)),
		"cpu_model":         types.StringValue(inv.CPUModel),
		"cpu_cores":         types.Int64Value(int64(inv.CPUCores)),
		"cpu_threads":       types.Int64Value(int64(inv.CPUThreads)),
		"gpus":              types.Int64Value(int64(inv.GPUs)),
		"gpu_model":         types.StringValue(inv.GPUModel),
		"accelerators":      types.Int64Value(int64(inv.Accelerators)),
		"accelerator_model": types.StringValue(inv.AcceleratorModel),
		"memory_gib":        types.Float64Value(inv.MemoryGiB),
		"nics":              types.ListValueMust(types.ObjectType{AttrTypes: nicAttrTypes}, nics),
		"disks":             types.ListValueMust(types.ObjectType{AttrTypes: diskAttrTypes}, disks),
		"boot_mode":         types.StringValue(inv.BootMode),
		"boot_modes":        types.ListValueMust(types.StringType, modes),
		"fingerprint":       types.StringValue(inv.Fingerprint),
	})
}
