package bmc

import (
	"net/url"
	"strings"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/endpoint"
)

// parseEndpoint parses a stored machine's endpoint by the one rule
// (endpoint.ParseBMC) but ignores blanks around it, as this package always
// has: the API accepted a trailing blank in the path before it shared that
// rule, and a machine stored then must keep working.
func parseEndpoint(raw string) (endpoint.BMC, error) {
	return endpoint.ParseBMC(strings.TrimSpace(raw))
}

// displayEndpoint is how an endpoint that failed to parse is named in errors:
// redacted of any password, or not at all.
func displayEndpoint(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" {
		return "(invalid endpoint)"
	}
	u.User = nil
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}
