package bmc

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stmcginnis/gofish/schemas"
)

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in, base, system, err string
	}{
		{in: "https://10.0.0.5", base: "https://10.0.0.5"},
		{in: " HTTPS://BMC.example.com:8443/ ", base: "https://bmc.example.com:8443"},
		{in: "http://[fd00::5]:8000/redfish/v1/", base: "http://[fd00::5]:8000"},
		{in: "https://10.0.0.5/redfish/v1/Systems/System.Embedded.1", base: "https://10.0.0.5", system: "/redfish/v1/Systems/System.Embedded.1"},
		{in: "http://127.0.0.1:8000/redfish/v1/Systems/lab-1/", base: "http://127.0.0.1:8000", system: "/redfish/v1/Systems/lab-1"},
		{in: "http://h/redfish/v1/systems/1", base: "http://h", system: "/redfish/v1/Systems/1"},
		{in: "", err: "endpoint is empty"},
		{in: "10.0.0.5", err: "must start with http:// or https://"},
		{in: "ftp://10.0.0.5", err: "must start with http:// or https://"},
		{in: "https://", err: "has no host"},
		{in: "https://h:0", err: "not in 1-65535"},
		{in: "https://h:70000", err: "not in 1-65535"},
		{in: "https://admin:secret@h", err: "must not carry credentials"},
		{in: "https://h/?x=1", err: "query or fragment"},
		{in: "https://h/#frag", err: "query or fragment"},
		{in: "https://h/redfish/v1/Systems", err: "is not /redfish/v1/Systems/<id>"},
		{in: "https://h/redfish/v1/Systems/1/Bios", err: "is not /redfish/v1/Systems/<id>"},
		{in: "https://h/redfish/v1/Systems/..", err: "has no system id"},
		{in: "https://h/other", err: "is not /redfish/v1/Systems/<id>"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ep, err := parseEndpoint(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ep.base != tt.base || ep.system != tt.system {
				t.Errorf("got base %q system %q, want %q %q", ep.base, ep.system, tt.base, tt.system)
			}
		})
	}
}

// FuzzParseEndpoint: parsing outside input never panics; what it accepts
// is a normal form that parses to itself; what it rejects is never quoted
// back with credentials.
func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{
		"https://10.0.0.5", "http://127.0.0.1:8000/redfish/v1/Systems/lab-1", "https://h/redfish/v1/",
		"https://u:p@h", "http://[::1]:1/redfish/v1/Systems/%2F", "ftp://x", "https://h/redfish/v1/Systems/a/b",
		"http://h:99999", "https://h/#x", "http://%zz", "https://h/redfish/v1/Systems/%E2%82%AC",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ep, err := parseEndpoint(in)
		if err != nil {
			if u, perr := url.Parse(strings.TrimSpace(in)); perr == nil && u.User != nil {
				if p, ok := u.User.Password(); ok && len(p) >= 4 && strings.Contains(err.Error(), p) {
					t.Fatalf("error %q quotes the password", err)
				}
			}
			return
		}
		if !strings.HasPrefix(ep.base, "http://") && !strings.HasPrefix(ep.base, "https://") {
			t.Fatalf("base %q has no http(s) scheme", ep.base)
		}
		if strings.Contains(ep.base[len("https://"):], "/") {
			t.Fatalf("base %q has a path", ep.base)
		}
		if ep.system != "" {
			id := strings.TrimPrefix(ep.system, systemsPrefix)
			if !strings.HasPrefix(ep.system, systemsPrefix) || id == "" || strings.Contains(id, "/") {
				t.Fatalf("system %q is not %s<id>", ep.system, systemsPrefix)
			}
		}
		again, err := parseEndpoint(ep.String())
		if err != nil || again != ep {
			t.Fatalf("%q normalised to %q, which parses to %+v, %v", in, ep.String(), again, err)
		}
	})
}

func TestChooseReset(t *testing.T) {
	all := []string{"On", "ForceOff", "GracefulShutdown", "ForceRestart", "PowerCycle", "ForceOn", "PushPowerButton"}
	tests := []struct {
		action  PowerAction
		allowed []string
		state   string
		want    string
	}{
		{PowerOn, all, "Off", "On"},
		{PowerOn, nil, "Off", "On"}, // the BMC does not say: the exact type
		{PowerOn, []string{"ForceOn"}, "Off", "ForceOn"},
		{PowerOn, []string{"PushPowerButton"}, "Off", "PushPowerButton"},
		{PowerOn, []string{"PushPowerButton"}, "PoweringOff", ""}, // a press would toggle
		{PowerForceOff, []string{"On", "GracefulShutdown"}, "On", ""},
		{PowerGracefulShutdown, []string{"ForceOff"}, "On", "ForceOff"},
		{PowerForceRestart, []string{"PowerCycle"}, "On", "PowerCycle"},
		{PowerForceRestart, []string{"ForceOff", "On"}, "On", "ForceOff+On"},
		{PowerForceRestart, []string{"ForceOff", "ForceOn"}, "On", "ForceOff+On"},
		{PowerForceRestart, []string{"ForceOff"}, "On", ""},
		{PowerCycle, []string{"ForceRestart", "On", "ForceOff"}, "On", "ForceRestart"},
		{PowerCycle, all, "On", "PowerCycle"},
	}
	for _, tt := range tests {
		var allowed []schemas.ResetType
		for _, a := range tt.allowed {
			allowed = append(allowed, schemas.ResetType(a))
		}
		got, ok := chooseReset(tt.action, allowed, schemas.PowerState(tt.state))
		if string(got) != tt.want || ok != (tt.want != "") {
			t.Errorf("%s with %v in %s: got %q, %v; want %q", tt.action, tt.allowed, tt.state, got, ok, tt.want)
		}
	}
}
