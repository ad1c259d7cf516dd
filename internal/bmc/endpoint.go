package bmc

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// systemsPrefix is the path of a Metal3-style full system URL up to the id.
const systemsPrefix = "/redfish/v1/Systems/"

// endpoint is a parsed BMC address: the Redfish service it lives on and,
// when the operator named one, the system within it.
type endpoint struct {
	base   string // scheme://host[:port], lower-cased, no trailing slash
	system string // "/redfish/v1/Systems/<id>", or "" for the service's only system
}

func (e endpoint) String() string { return e.base + e.system }

const endpointForm = "http(s)://host[:port] or http(s)://host[:port]/redfish/v1/Systems/<id>"

// parseEndpoint validates an operator-supplied BMC endpoint. Its errors never
// echo the input wholesale: a mistyped URL may carry a password.
func parseEndpoint(raw string) (endpoint, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return endpoint{}, fmt.Errorf("endpoint is empty (want %s)", endpointForm)
	}
	u, err := url.Parse(s)
	if err != nil {
		return endpoint{}, fmt.Errorf("endpoint is not a valid URL (want %s)", endpointForm)
	}
	if u.User != nil {
		return endpoint{}, errors.New("endpoint must not carry credentials: set the BMC username and password instead")
	}
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "http" && scheme != "https") || u.Opaque != "" {
		return endpoint{}, fmt.Errorf("endpoint must start with http:// or https:// (want %s)", endpointForm)
	}
	if u.Hostname() == "" {
		return endpoint{}, fmt.Errorf("endpoint has no host (want %s)", endpointForm)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return endpoint{}, fmt.Errorf("endpoint port %q is not in 1-65535", p)
		}
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#") {
		return endpoint{}, fmt.Errorf("endpoint must not have a query or fragment (want %s)", endpointForm)
	}
	ep := endpoint{base: scheme + "://" + strings.ToLower(u.Host)}

	path := strings.TrimRight(u.EscapedPath(), "/")
	if path == "" || strings.EqualFold(path, "/redfish/v1") {
		return ep, nil
	}
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(segs) != 4 || !strings.EqualFold(segs[0], "redfish") || !strings.EqualFold(segs[1], "v1") ||
		!strings.EqualFold(segs[2], "Systems") {
		return endpoint{}, fmt.Errorf("endpoint path %q is not /redfish/v1/Systems/<id> (want %s)", path, endpointForm)
	}
	id := segs[3]
	if id == "" || id == "." || id == ".." {
		return endpoint{}, fmt.Errorf("endpoint path %q has no system id (want %s)", path, endpointForm)
	}
	ep.system = systemsPrefix + id
	return ep, nil
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
