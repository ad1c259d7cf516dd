package provider

import (
	"context"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// TestInventorySchemaMatchesValue: the object inventoryValue builds has the
// type every schema declares, so state written by one reads in the others.
func TestInventorySchemaMatchesValue(t *testing.T) {
	ctx := context.Background()
	want := types.ObjectType{AttrTypes: inventoryAttrTypes}
	assert.True(t, inventoryValue(&api.Inventory{}).Type(ctx).Equal(want))

	var rs resource.SchemaResponse
	NewMachineResource().Schema(ctx, resource.SchemaRequest{}, &rs)
	assert.True(t, rs.Schema.Attributes["inventory"].GetType().Equal(want), "baremetal_machine")
	for name, d := range map[string]datasource.DataSource{"baremetal_machine": NewMachineDataSource(), "baremetal_machines": NewMachinesDataSource()} {
		var ds datasource.SchemaResponse
		d.Schema(ctx, datasource.SchemaRequest{}, &ds)
		got := ds.Schema.Attributes["inventory"]
		if got == nil { // the list data source nests machines
			elem := ds.Schema.Attributes["machines"].GetType().(types.ListType).ElemType.(types.ObjectType)
			assert.True(t, elem.AttrTypes["inventory"].Equal(want), name)
			continue
		}
		assert.True(t, got.GetType().Equal(want), name)
	}
}

func TestInventoryValue(t *testing.T) {
	assert.True(t, inventoryValue(nil).IsNull())

	obj := inventoryValue(&api.Inventory{
		Manufacturer: "Contoso", CPUs: 1, CPUModel: "EPYC", CPUCores: 48, CPUThreads: 96,
		GPUs: 8, GPUModel: "H100", Accelerators: 1, AcceleratorModel: "Stratix 10", MemoryGiB: 512,
		NICs:     []api.NIC{{Name: "eth0", MAC: "52:54:00:00:00:01"}},
		Disks:    []api.Disk{{Name: "Bay 0", Model: "ST4000", Serial: "WJG0", SizeGiB: 3726.02, MediaType: "HDD", Rotational: true}},
		BootMode: "uefi", BootModes: []string{"legacy", "uefi"},
	})
	a := obj.Attributes()
	for name, want := range map[string]attr.Value{
		"manufacturer": types.StringValue("Contoso"), "cpus": types.Int64Value(1), "cpu_model": types.StringValue("EPYC"),
		"cpu_cores": types.Int64Value(48), "cpu_threads": types.Int64Value(96), "gpus": types.Int64Value(8),
		"gpu_model": types.StringValue("H100"), "accelerators": types.Int64Value(1),
		"accelerator_model": types.StringValue("Stratix 10"), "memory_gib": types.Float64Value(512),
		"boot_mode":  types.StringValue("uefi"),
		"boot_modes": types.ListValueMust(types.StringType, []attr.Value{types.StringValue("legacy"), types.StringValue("uefi")}),
	} {
		assert.Equal(t, want, a[name], name)
	}
	disks := a["disks"].(types.List).Elements()
	require.Len(t, disks, 1)
	disk := disks[0].(types.Object).Attributes()
	assert.Equal(t, types.StringValue("Bay 0"), disk["name"])
	assert.Equal(t, types.Float64Value(3726.02), disk["size_gib"])
	assert.Equal(t, types.StringValue("ST4000"), disk["model"])
	assert.Equal(t, types.StringValue("WJG0"), disk["serial"])
	assert.Equal(t, types.StringValue("HDD"), disk["media_type"])
	assert.Equal(t, types.BoolValue(true), disk["rotational"])

	empty := inventoryValue(&api.Inventory{}).Attributes()
	assert.Empty(t, empty["disks"].(types.List).Elements())
	assert.Empty(t, empty["boot_modes"].(types.List).Elements())
	assert.Equal(t, types.StringValue(""), empty["boot_mode"], "not reported reads as empty, not null")
}
