package apiserver

import (
	"encoding/json"
	"errors"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"net/http"
	"reflect"
	"testing"
)

// FuzzDecodeMachineRequest feeds arbitrary bodies through the decoder and
// the request-only part of validation: no input may panic, every refusal
// must be a 400/413/422 answer, and whatever is accepted must survive a
// JSON round trip unchanged.
func FuzzDecodeMachineRequest(f *testing.F) {
	for _, seed := range []string{
		`{"name":"m1","bmc":{"endpoint":"https://10.0.0.5","username":"admin","password":"pw"},"macs":["52:54:00:12:34:56"],"boot_profile":"debian","params":{"disk":"/dev/sda"},"state":"provisioned"}`,
		`{"name":"m1","bmc":{"endpoint":"https://10.0.0.5","passwd":"x"}}`,
		`{"name":"m1","members":[{"machine":"a","colour":"red"}]}`,
		`{"name":"m1"} trailing`,
		`{"name":`,
		`[]`,
		`null`,
		`{"macs":"not-a-list"}`,
		`{"params":{"":"empty key"}}`,
		`{"NAME":"case-insensitive"}`,
		`{"name":"a","name":"b"}`,
		`{"params":{"k":"1","k":"2"}}`,
		`{"bmc":{"Password":"x"}}`,
		`{"bmc":{"endpoint":"https://u:p@h"}}`,
		"{\"name\":\"\\ud800\"}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req api.MachineRequest
		err := decodeBody(body, &req)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != http.StatusBadRequest || ae.code != api.CodeBadRequest || ae.message == "" {
				t.Fatalf("decode refusal is not a 400 bad_request: %#v", err)
			}
			return
		}
		data, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("re-encoding an accepted request: %v", err)
		}
		var again api.MachineRequest
		if err := decodeBody(data, &again); err != nil {
			t.Fatalf("an accepted request does not decode again: %v (%s)", err, data)
		}
		if !reflect.DeepEqual(normalised(req), normalised(again)) {
			t.Fatalf("round trip changed the request:\n%#v\n%#v", req, again)
		}
		// Validation of the request's own fields must answer 422 with a field.
		if err := validateName(req.Name); err != nil {
			checkInvalid(t, err)
		}
		if err := validateBMC(&req.BMC, true); err != nil {
			checkInvalid(t, err)
		}
		if err := validateParams("params", req.Params); err != nil {
			checkInvalid(t, err)
		}
	})
}

func checkInvalid(t *testing.T, err error) {
	t.Helper()
	var ae *apiError
	if !errors.As(err, &ae) || ae.status != http.StatusUnprocessableEntity || ae.field == "" {
		t.Fatalf("validation refusal is not a 422 naming a field: %#v", err)
	}
}

// normalised maps empty collections to nil: omitempty drops them on the
// way out, which is no change in meaning.
func normalised(r api.MachineRequest) api.MachineRequest {
	if len(r.MACs) == 0 {
		r.MACs = nil
	}
	if len(r.Params) == 0 {
		r.Params = nil
	}
	return r
}
