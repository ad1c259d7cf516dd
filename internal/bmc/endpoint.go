package bmc

import (
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
