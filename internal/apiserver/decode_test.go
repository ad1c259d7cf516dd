package apiserver

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// TestDecodeStrictKeys: keys match field names exactly, and no key appears
// twice in one object, at any depth; the error names the key's path.
func TestDecodeStrictKeys(t *testing.T) {
	for _, tc := range []struct {
		body, field string // field "" = accepted
	}{
		{`{"name":"m1","bmc":{"endpoint":"https://h","username":"u"},"params":{"a":"1","A":"2"}}`, ""},
		{`{"Name":"m1"}`, "Name"},
		{`{"bmc":{"Password":"x"}}`, "bmc.Password"},
		{`{"name":"a","name":"b"}`, "name"},
		{`{"bmc":{"username":"a","username":"b"}}`, "bmc.username"},
		{`{"params":{"k":"1","k":"2"}}`, "params.k"},
		{`{"macs":["52:54:00:00:00:01"],"name":"m","macs":[]}`, "macs"},
	} {
		t.Run(tc.body, func(t *testing.T) {
			var req api.MachineRequest
			err := decodeBody([]byte(tc.body), &req)
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			var ae *apiError
			require.ErrorAs(t, err, &ae)
			require.Equal(t, 400, ae.status)
			require.Equal(t, tc.field, ae.field)
		})
	}
}
