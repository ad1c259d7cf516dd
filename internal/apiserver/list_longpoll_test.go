package apiserver

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// TestListLongPoll: a list with ?wait= and ?if_none_match= sleeps until a
// machine it lists (or one joining or leaving it) changes, answers at once
// when the list already differs, and otherwise answers unchanged at the end
// of the wait.
func TestListLongPoll(t *testing.T) {
	e := newEnv(t)
	e.createMachine(machineReq("m1"))
	e.createMachine(machineReq("m2"))
	ctx := context.Background()
	list := func(query string) (api.MachineList, time.Duration) {
		start := time.Now()
		var got api.MachineList
		e.must(200, e.req("GET", "/v1/machines"+query, nil)).decode(t, &got)
		return got, time.Since(start)
	}
	first, _ := list("")
	require.NotEmpty(t, first.ETag)

	cases := []struct {
		name    string
		query   string
		change  func()
		wantNew bool
		minTook time.Duration
		maxTook time.Duration
	}{
		{name: "a plain list ignores if_none_match", query: "?if_none_match=" + first.ETag, maxTook: 5 * time.Second},
		{name: "an etag other than the list's answers at once", query: "?wait=30s&if_none_match=other", maxTook: 5 * time.Second},
		{name: "unchanged list answers at the end of the wait", query: "?wait=300ms&if_none_match=" + first.ETag, minTook: 300 * time.Millisecond, maxTook: 5 * time.Second},
		{
			name: "wakes on a listed machine's change", query: "?wait=30s&if_none_match=" + first.ETag, wantNew: true, maxTook: 20 * time.Second,
			change: func() {
				_, err := e.store.UpdateMachine(ctx, "m2", func(m *model.Machine) (bool, error) {
					m.Status.Phase = model.PhaseInspecting
					return false, nil
				})
				require.NoError(t, err)
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			type answer struct {
				l    api.MachineList
				took time.Duration
			}
			done := make(chan answer, 1)
			go func() {
				l, took := list(tc.query)
				done <- answer{l, took}
			}()
			if tc.change != nil {
				waitFor(t, func() bool { return e.subscribers() > 0 })
				tc.change()
			}
			got := <-done
			assert.Equal(t, tc.wantNew, got.l.ETag != first.ETag, "etag %s, first %s", got.l.ETag, first.ETag)
			assert.Len(t, got.l.Items, 2)
			assert.GreaterOrEqual(t, got.took, tc.minTook)
			assert.Less(t, got.took, tc.maxTook)
			if tc.wantNew {
				first = got.l
			}
		})
	}
	t.Run("a filter's etag changes when a machine leaves it", func(t *testing.T) {
		inspecting, _ := list("?phase=inspecting")
		require.Len(t, inspecting.Items, 1)
		_, err := e.store.UpdateMachine(ctx, "m2", func(m *model.Machine) (bool, error) {
			m.Status.Phase = model.PhaseAvailable
			return false, nil
		})
		require.NoError(t, err)
		got, _ := list(fmt.Sprintf("?phase=inspecting&wait=30s&if_none_match=%s", inspecting.ETag))
		assert.Empty(t, got.Items)
		assert.NotEqual(t, inspecting.ETag, got.ETag)
	})
}
