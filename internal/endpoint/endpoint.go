// Package endpoint is the one rule for a BMC endpoint, shared by the
// provider's plan-time check, the API's validation and the BMC client, so
// an endpoint that passes plan and API is one the BMC client can use.
package endpoint

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// SystemsPrefix is the path of a Metal3-style full system URL up to the id.
const SystemsPrefix = "/redfish/v1/Systems/"

// Form is how errors say what a BMC endpoint may look like.
const Form = "http(s)://host[:port] or http(s)://host[:port]/redfish/v1/Systems/<id>"

// BMC is a parsed BMC endpoint: the Redfish service it lives on and, when
// the operator named one, the system within it.
type BMC struct {
	// Base is scheme://host[:port], lower-cased, without a trailing slash.
	Base string
	// System is "/redfish/v1/Systems/<id>", or "" for the service's only
	// system.
	System string
}

// String is the endpoint's normal form, which parses to the same BMC.
func (e BMC) String() string { return e.Base + e.System }

// ParseBMC parses an operator's BMC endpoint. Its errors start with
// "endpoint" (callers prefix the field) and never quote the input: a
// mistyped URL may carry a password.
func ParseBMC(raw string) (BMC, error) {
	if raw == "" {
		return BMC{}, fmt.Errorf("endpoint is empty (want %s)", Form)
	}
	if strings.TrimSpace(raw) != raw {
		return BMC{}, fmt.Errorf("endpoint has leading or trailing blanks (want %s)", Form)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return BMC{}, fmt.Errorf("endpoint is not a valid URL (want %s)", Form)
	}
	if u.User != nil {
		return BMC{}, errors.New("endpoint must not carry credentials: set the BMC username and password instead")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" {
		return BMC{}, fmt.Errorf("endpoint must start with http:// or https:// (want %s)", Form)
	}
	if u.Hostname() == "" {
		return BMC{}, fmt.Errorf("endpoint has no host (want %s)", Form)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return BMC{}, fmt.Errorf("endpoint port %q is not in 1-65535", p)
		}
	}
	// url.Parse drops an empty fragment, so a bare "#" is looked for too.
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#") {
		return BMC{}, fmt.Errorf("endpoint must not have a query or fragment (want %s)", Form)
	}
	ep := BMC{Base: u.Scheme + "://" + strings.ToLower(u.Host)}

	path := strings.TrimRight(u.EscapedPath(), "/")
	if path == "" || strings.EqualFold(path, "/redfish/v1") {
		return ep, nil
	}
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(segs) != 4 || !strings.EqualFold(segs[0], "redfish") || !strings.EqualFold(segs[1], "v1") ||
		!strings.EqualFold(segs[2], "Systems") {
		return BMC{}, fmt.Errorf("endpoint path %q is not /redfish/v1/Systems/<id> (want %s)", path, Form)
	}
	id := segs[3]
	if id == "" || id == "." || id == ".." {
		return BMC{}, fmt.Errorf("endpoint path %q has no system id (want %s)", path, Form)
	}
	ep.System = SystemsPrefix + id
	return ep, nil
}

// Display is how an endpoint is named in errors and logs: without any
// password, query or fragment, or, when it does not parse, not at all.
func Display(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" {
		return "(invalid endpoint)"
	}
	u.User = nil
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}
