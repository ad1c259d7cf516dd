package provider

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/endpoint"
)

// nameValidator accepts what the agent accepts as an object name; the rule
// text is the agent's own, so the plan-time error and the API's agree.
type nameValidator struct{}

func validName() validator.String { return nameValidator{} }

func (nameValidator) Description(context.Context) string {
	return "must be " + api.NameRule
}

func (v nameValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (v nameValidator) ValidateString(ctx context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if s := req.ConfigValue.ValueString(); !api.ValidName(s) {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid Name",
			fmt.Sprintf("%q is not a valid name: it %s.", s, v.Description(ctx)))
	}
}

// macValidator requires the normalised form the agent stores (lower case,
// colons), so the value read back always equals the configured one and a
// plan never shows a spurious change from "AA-BB-..." to "aa:bb:...".
type macValidator struct{}

func validMAC() validator.String { return macValidator{} }

func (macValidator) Description(context.Context) string {
	return "must be a 48-bit MAC address in lower-case colon form, e.g. `52:54:00:12:34:56`"
}

func (v macValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (v macValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	s := req.ConfigValue.ValueString()
	norm, err := api.NormalizeMAC(s)
	switch {
	case err != nil:
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid MAC Address", err.Error()+".")
	case norm != s:
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid MAC Address",
			fmt.Sprintf("%q must be written in lower-case colon form: %q.", s, norm))
	}
}

// bmcEndpointValidator applies the agent's own BMC endpoint rule at plan,
// so an endpoint that plans is one the agent accepts and its BMC client can
// use.
type bmcEndpointValidator struct{}

func bmcEndpoint() validator.String { return bmcEndpointValidator{} }

func (bmcEndpointValidator) Description(context.Context) string {
	return "must be " + endpoint.Form
}

func (v bmcEndpointValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (bmcEndpointValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	// The error never quotes the value, which may hold a password.
	if _, err := endpoint.ParseBMC(req.ConfigValue.ValueString()); err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid BMC Endpoint", "The BMC "+err.Error()+".")
	}
}

// urlSchemeValidator requires an absolute URL with a host and one of the
// given schemes.
type urlSchemeValidator struct{ schemes []string }

func urlScheme(schemes ...string) validator.String { return urlSchemeValidator{schemes: schemes} }

func (v urlSchemeValidator) Description(context.Context) string {
	return "must be an absolute URL with scheme " + quotedList(v.schemes, " or ")
}

func (v urlSchemeValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (v urlSchemeValidator) ValidateString(ctx context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	s := req.ConfigValue.ValueString()
	if err := checkURL(s, v.schemes); err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid URL", fmt.Sprintf("%q %s: %s.", s, v.Description(ctx), err))
	}
}

func checkURL(s string, schemes []string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	ok := false
	for _, sc := range schemes {
		if u.Scheme == sc {
			ok = true
		}
	}
	switch {
	case !ok:
		return fmt.Errorf("scheme %q is not allowed", u.Scheme)
	case u.Host == "":
		return fmt.Errorf("no host")
	case u.User != nil:
		return fmt.Errorf("credentials belong in their own attributes, not in the URL")
	}
	return nil
}

// quotedList renders values the way docs print allowed values: `a`, `b` or `c`.
func quotedList(values []string, lastSep string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = "`" + v + "`"
	}
	if len(q) <= 1 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + lastSep + q[len(q)-1]
}
