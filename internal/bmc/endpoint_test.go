package bmc

import (
	"testing"

	"github.com/stmcginnis/gofish/schemas"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestParseEndpoint: the rule is endpoint.ParseBMC's (tested there); a
// stored endpoint's surrounding blanks are ignored here.
func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "https://10.0.0.5", want: "https://10.0.0.5"},
		{in: " HTTPS://BMC.example.com:8443/ ", want: "https://bmc.example.com:8443"},
		{in: "https://h/redfish/v1/Systems/1 ", want: "https://h/redfish/v1/Systems/1"},
		{in: " ", err: "endpoint is empty"},
		{in: "https://h/wrong/path", err: "is not /redfish/v1/Systems/<id>"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ep, err := parseEndpoint(tt.in)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, ep.String())
		})
	}
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
