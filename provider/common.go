package provider

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
)

// clientFrom is the checked type assertion every resource and data source
// Configure uses. A nil provider data means the provider is not configured
// yet (validate, or plan with unknown provider values): not an error.
func clientFrom(data any, diags *diag.Diagnostics) *client.Client {
	if data == nil {
		return nil
	}
	c, ok := data.(*client.Client)
	if !ok {
		diags.AddError("Unexpected Provider Data Type",
			fmt.Sprintf("Expected *client.Client, got %T. This is a bug in the provider; please report it.", data))
		return nil
	}
	return c
}

// requireClient reports an unconfigured provider where the agent is needed.
func requireClient(c *client.Client, diags *diag.Diagnostics) bool {
	if c == nil {
		diags.AddError("Baremetal Provider Not Configured",
			"The provider has no agent connection, usually because its endpoint or token depends on a value "+
				"that is not known until apply. Set them from known values, variables or the "+EnvEndpoint+"/"+EnvToken+" environment variables.")
		return false
	}
	return true
}

// describeErr adds the hint an operator needs for the common API failures.
func describeErr(err error) string {
	var hint string
	switch {
	case errors.Is(err, client.ErrUnauthorized):
		hint = "\n\nThe agent rejected the token: check the provider's token (or " + EnvToken + ")."
	case errors.Is(err, client.ErrForbidden):
		hint = "\n\nThe token is read-only for this agent; use a read-write token to change objects."
	case client.LeaseHeld(err):
		hint = "\n\nAnother Terraform configuration or workspace is changing this machine and holds its lease. " +
			"Wait for that run to finish (it releases the lease when done; a run that dies loses it " + leaseLapse(err) + "), then apply again."
	case errors.Is(err, context.DeadlineExceeded):
		hint = "\n\nThe operation did not finish within its timeout; raise it in the resource's timeouts block if the hardware is slow."
	}
	return err.Error() + hint
}

// nameTaken reports a 409 because an object of that name exists: the one
// conflict an import fixes.
func nameTaken(err error) bool {
	var apiErr *client.APIError
	return errors.Is(err, client.ErrConflict) && errors.As(err, &apiErr) && apiErr.Field == "name"
}

// macTaken reports a 409 because another machine lists one of the MACs.
func macTaken(err error) bool {
	var apiErr *client.APIError
	return errors.Is(err, client.ErrConflict) && errors.As(err, &apiErr) && (apiErr.Field == "macs" || strings.HasPrefix(apiErr.Field, "macs["))
}

// leaseLapse says when a dead holder's lease runs out, in the agent's
// terms: its --lease-duration can be anything.
func leaseLapse(err error) string {
	var apiErr *client.APIError
	if errors.As(err, &apiErr) && apiErr.LeaseDuration > 0 {
		return apiErr.LeaseDuration.String() + " after its last renewal"
	}
	return "when the lease runs out"
}

// stringsToList converts API strings into a list, keeping an empty but
// non-null prior value so `x = []` in config does not read back as null.
func stringsToList(values []string, prior types.List) types.List {
	if len(values) == 0 && (prior.IsNull() || prior.IsUnknown()) {
		return types.ListNull(types.StringType)
	}
	elems := make([]attr.Value, len(values))
	for i, v := range values {
		elems[i] = types.StringValue(v)
	}
	return types.ListValueMust(types.StringType, elems)
}

// stringsToMap is stringsToList for maps.
func stringsToMap(values map[string]string, prior types.Map) types.Map {
	if len(values) == 0 && (prior.IsNull() || prior.IsUnknown()) {
		return types.MapNull(types.StringType)
	}
	elems := make(map[string]attr.Value, len(values))
	for k, v := range values {
		elems[k] = types.StringValue(v)
	}
	return types.MapValueMust(types.StringType, elems)
}

func listToStrings(ctx context.Context, l types.List, diags *diag.Diagnostics) []string {
	if l.IsNull() || l.IsUnknown() {
		return nil
	}
	var out []string
	diags.Append(l.ElementsAs(ctx, &out, false)...)
	return out
}

func mapToStrings(ctx context.Context, m types.Map, diags *diag.Diagnostics) map[string]string {
	if m.IsNull() || m.IsUnknown() {
		return nil
	}
	out := map[string]string{}
	diags.Append(m.ElementsAs(ctx, &out, false)...)
	return out
}

// optString maps "" to null so optional attributes left out of config stay null.
func optString(s string) types.String {
	if s == "" {
		return types.StringNull()
	}
	return types.StringValue(s)
}

// sortedKeys gives maps a stable order in diagnostics.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// nameRuleText is the agent's name rule as printed in attribute descriptions.
const nameRuleText = api.NameRule + "."

// addAPIError attaches a validation error to the attribute the agent named,
// so Terraform points at the offending line of configuration.
func addAPIError(diags *diag.Diagnostics, err error, summary, detail string) {
	var apiErr *client.APIError
	if errors.As(err, &apiErr) && apiErr.Field != "" {
		field := apiErr.Field
		if rest, ok := strings.CutPrefix(field, "secret_params"); ok {
			// The agent's secret_params is the write-only attribute here.
			field = "secret_params_wo" + rest
		}
		if p, ok := fieldPath(field); ok {
			diags.AddAttributeError(p, summary, detail)
			return
		}
	}
	diags.AddError(summary, detail)
}

// fieldPath turns an API field name such as "bmc.endpoint" or "macs[1]"
// into an attribute path.
func fieldPath(field string) (path.Path, bool) {
	var p path.Path
	for i, part := range strings.Split(field, ".") {
		name, rest, _ := strings.Cut(part, "[")
		if name == "" {
			return path.Empty(), false
		}
		if i == 0 {
			p = path.Root(name)
		} else {
			p = p.AtName(name)
		}
		for rest != "" {
			idx, after, ok := strings.Cut(rest, "]")
			n, err := strconv.Atoi(idx)
			if !ok || err != nil || n < 0 {
				return path.Empty(), false
			}
			p = p.AtListIndex(n)
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return p, true
}

// importByName accepts an object's name as its import ID (objects are
// identified by name on the agent) and validates it before any API call.
func importByName(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	if !api.ValidName(req.ID) {
		resp.Diagnostics.AddError("Invalid Import ID",
			fmt.Sprintf("The import ID is the object's name, which must be %s Got %q.", nameRuleText, req.ID))
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), req.ID)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("name"), req.ID)...)
}

func sortMachines(ms []api.Machine) {
	sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
}

// filterID is a readable, deterministic id for a filtered listing.
func filterID(f client.MachineFilter, minMem types.Float64, minCPUs types.Int64) string {
	parts := []string{"state=" + string(f.State), "phase=" + string(f.Phase), "cluster=" + f.Cluster, "role=" + f.Role}
	if !minMem.IsNull() {
		parts = append(parts, "min_memory_gib="+strconv.FormatFloat(minMem.ValueFloat64(), 'g', -1, 64))
	}
	if !minCPUs.IsNull() {
		parts = append(parts, "min_cpus="+strconv.FormatInt(minCPUs.ValueInt64(), 10))
	}
	return strings.Join(parts, ",")
}
