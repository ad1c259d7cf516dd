package endpoint

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseBMC(t *testing.T) {
	tests := []struct {
		in, base, system, err string
	}{
		{in: "https://10.0.0.5", base: "https://10.0.0.5"},
		{in: "HTTPS://BMC.example.com:8443/", base: "https://bmc.example.com:8443"},
		{in: "http://[fd00::5]:8000/redfish/v1/", base: "http://[fd00::5]:8000"},
		{in: "https://10.0.0.5/redfish/v1/Systems/System.Embedded.1", base: "https://10.0.0.5", system: "/redfish/v1/Systems/System.Embedded.1"},
		{in: "http://127.0.0.1:8000/redfish/v1/Systems/lab-1/", base: "http://127.0.0.1:8000", system: "/redfish/v1/Systems/lab-1"},
		{in: "http://h/redfish/v1/systems/1", base: "http://h", system: "/redfish/v1/Systems/1"},
		{in: "", err: "endpoint is empty"},
		{in: " https://h", err: "leading or trailing blanks"},
		{in: "https://h/redfish/v1/Systems/1 ", err: "leading or trailing blanks"},
		{in: "10.0.0.5", err: "must start with http:// or https://"},
		{in: "ftp://10.0.0.5", err: "must start with http:// or https://"},
		{in: "https:10.0.0.5", err: "must start with http:// or https://"},
		{in: "https://", err: "has no host"},
		{in: "https://:443", err: "has no host"},
		{in: "https://h:0", err: "not in 1-65535"},
		{in: "https://h:70000", err: "not in 1-65535"},
		{in: "https://admin:secret@h", err: "must not carry credentials"},
		{in: "https://h/?x=1", err: "query or fragment"},
		{in: "https://h?", err: "query or fragment"},
		{in: "https://h/#frag", err: "query or fragment"},
		{in: "https://h/#", err: "query or fragment"},
		{in: "https://h/redfish/v1/Systems", err: "is not /redfish/v1/Systems/<id>"},
		{in: "https://h/redfish/v1/Systems/1/Bios", err: "is not /redfish/v1/Systems/<id>"},
		{in: "https://h/redfish/v1/Systems/..", err: "has no system id"},
		{in: "https://bmc/wrong/path", err: "is not /redfish/v1/Systems/<id>"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ep, err := ParseBMC(tt.in)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, BMC{Base: tt.base, System: tt.system}, ep)
		})
	}
}

// FuzzParseBMC: parsing outside input never panics; what it accepts is a
// normal form that parses to itself; what it rejects is never quoted back
// with credentials.
func FuzzParseBMC(f *testing.F) {
	for _, s := range []string{
		"https://10.0.0.5", "http://127.0.0.1:8000/redfish/v1/Systems/lab-1", "https://h/redfish/v1/",
		"https://u:p@h", "http://[::1]:1/redfish/v1/Systems/%2F", "ftp://x", "https://h/redfish/v1/Systems/a/b",
		"http://h:99999", "https://h/#x", "http://%zz", "https://h/redfish/v1/Systems/%E2%82%AC", " https://h ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ep, err := ParseBMC(in)
		if err != nil {
			if u, perr := url.Parse(strings.TrimSpace(in)); perr == nil && u.User != nil {
				if p, ok := u.User.Password(); ok && len(p) >= 4 && strings.Contains(err.Error(), p) {
					t.Fatalf("error %q quotes the password", err)
				}
			}
			return
		}
		if !strings.HasPrefix(ep.Base, "http://") && !strings.HasPrefix(ep.Base, "https://") {
			t.Fatalf("base %q has no http(s) scheme", ep.Base)
		}
		if strings.Contains(ep.Base[len("https://"):], "/") {
			t.Fatalf("base %q has a path", ep.Base)
		}
		if ep.System != "" {
			id := strings.TrimPrefix(ep.System, SystemsPrefix)
			if !strings.HasPrefix(ep.System, SystemsPrefix) || id == "" || strings.Contains(id, "/") {
				t.Fatalf("system %q is not %s<id>", ep.System, SystemsPrefix)
			}
		}
		again, err := ParseBMC(ep.String())
		if err != nil || again != ep {
			t.Fatalf("%q normalised to %q, which parses to %+v, %v", in, ep.String(), again, err)
		}
	})
}

func TestDisplay(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"https://admin:s3cret@10.0.0.5/redfish/v1/Systems/1?x=1#f", "https://10.0.0.5/redfish/v1/Systems/1"},
		{" https://bmc.example:8443 ", "https://bmc.example:8443"},
		{"not a url", "(invalid endpoint)"},
		{"https://[::1", "(invalid endpoint)"},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			assert.Equal(t, tc.want, Display(tc.raw))
		})
	}
}
