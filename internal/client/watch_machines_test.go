package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// TestWatchMachines: an etag turns the list into a long-poll of the
// client's poll wait; without one it is a plain list.
func TestWatchMachines(t *testing.T) {
	cases := []struct {
		name      string
		filter    MachineFilter
		etag      string
		wantQuery url.Values
	}{
		{name: "plain list", wantQuery: url.Values{}},
		{name: "filtered list", filter: MachineFilter{State: api.StateProvisioned}, wantQuery: url.Values{api.QueryState: {"provisioned"}}},
		{
			name: "long-poll", filter: MachineFilter{State: api.StateProvisioned}, etag: "abc",
			wantQuery: url.Values{api.QueryState: {"provisioned"}, api.QueryWait: {"2s"}, api.QueryIfNoneMatch: {"abc"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got url.Values
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				assert.Equal(t, api.PathMachines, r.URL.Path)
				got = r.URL.Query()
				_ = json.NewEncoder(w).Encode(api.MachineList{Items: []api.Machine{{Name: "m1"}}, ETag: "def"})
			}))
			t.Cleanup(srv.Close)
			c := newTestClient(t, srv.URL, nil, nil)
			c.pollWait = 2 * time.Second
			list, err := c.WatchMachines(context.Background(), tc.filter, tc.etag)
			require.NoError(t, err)
			assert.Equal(t, tc.wantQuery, got)
			assert.Equal(t, "def", list.ETag)
			assert.Equal(t, []api.Machine{{Name: "m1"}}, list.Items)
		})
	}
}
