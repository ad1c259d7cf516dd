package apiserver

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

func TestLeaseRenewAndRelease(t *testing.T) {
	const lease = "/v1/machines/m1/lease"
	holder := func(h string) []string { return []string{api.HeaderLeaseHolder, h} }
	renew := func(e *env, want int, h string) resp {
		t.Helper()
		return e.must(want, e.req("PUT", lease, nil, holder(h)...))
	}
	release := func(e *env, want int, h string) resp {
		t.Helper()
		return e.must(want, e.req("DELETE", lease, nil, holder(h)...))
	}
	stored := func(e *env) (holder string, expires time.Time, version uint64) {
		t.Helper()
		m, err := e.store.GetMachine(context.Background(), "m1")
		if err != nil {
			t.Fatal(err)
		}
		if m.Lease != nil {
			holder, expires = m.Lease.Holder, m.Lease.ExpiresAt
		}
		return holder, expires, m.Version
	}
	created := func(e *env) {
		t.Helper()
		e.must(201, e.req("POST", api.PathMachines, machineReq("m1"), holder("run-a")...))
	}

	tests := []struct {
		name string
		run  func(t *testing.T, e *env)
	}{
		{"holder renews: expiry moves, version does not", func(t *testing.T, e *env) {
			created(e)
			_, before, v := stored(e)
			e.clock.Advance(90 * time.Second)
			var l api.Lease
			renew(e, 200, "run-a").decode(t, &l)
			want := e.clock.Now().Add(api.DefaultLeaseDuration)
			if l.Holder != "run-a" || !l.ExpiresAt.Equal(want) || l.DurationSeconds != api.DefaultLeaseDuration.Seconds() {
				t.Errorf("lease %+v, want run-a until %s for %s", l, want, api.DefaultLeaseDuration)
			}
			h, after, v2 := stored(e)
			if h != "run-a" || !after.Equal(want) || !after.After(before) {
				t.Errorf("stored lease %s until %s (was %s), want until %s", h, after, before, want)
			}
			if v2 != v {
				t.Errorf("renewal changed the spec version %d -> %d", v, v2)
			}
			// Past the original expiry, the renewal still keeps others out.
			e.clock.Advance(60 * time.Second)
			e.must(409, e.req("PUT", "/v1/machines/m1", func() api.MachineRequest { r := machineReq("m1"); r.BMC.Password = ""; return r }(), holder("run-b")...))
		}},
		{"another holder's live lease is refused, naming holder and expiry", func(t *testing.T, e *env) {
			created(e)
			msg := renew(e, 409, "run-b").err()
			if msg.Code != api.CodeLeaseHeld || msg.Field != api.HeaderLeaseHolder || !strings.Contains(msg.Message, `"run-a"`) || !strings.Contains(msg.Message, "2026-01-02T03:06:05Z") {
				t.Errorf("conflict %+v should name run-a and its expiry", msg)
			}
			if h, _, _ := stored(e); h != "run-a" {
				t.Errorf("holder %q after a refused renewal", h)
			}
		}},
		{"an expired lease can be taken", func(t *testing.T, e *env) {
			created(e)
			e.clock.Advance(api.DefaultLeaseDuration + time.Second)
			renew(e, 200, "run-b")
			if h, _, _ := stored(e); h != "run-b" {
				t.Errorf("holder %q, want run-b", h)
			}
			renew(e, 409, "run-a")
		}},
		{"a free machine's lease can be taken", func(t *testing.T, e *env) {
			e.createMachine(machineReq("m1"))
			renew(e, 200, "run-b")
		}},
		{"holder releases; others may write at once", func(t *testing.T, e *env) {
			created(e)
			_, _, v := stored(e)
			release(e, 204, "run-a")
			if h, _, v2 := stored(e); h != "" || v2 != v {
				t.Errorf("after release: holder %q, version %d (was %d)", h, v2, v)
			}
			renew(e, 200, "run-b")
		}},
		{"releasing another holder's live lease is refused", func(t *testing.T, e *env) {
			created(e)
			if msg := release(e, 409, "run-b").err(); !strings.Contains(msg.Message, `"run-a"`) {
				t.Errorf("conflict should name run-a: %+v", msg)
			}
			if h, _, _ := stored(e); h != "run-a" {
				t.Errorf("holder %q after a refused release", h)
			}
		}},
		{"releasing without a live lease is a no-op", func(t *testing.T, e *env) {
			e.createMachine(machineReq("m1"))
			release(e, 204, "run-a")
			renew(e, 200, "run-a")
			e.clock.Advance(api.DefaultLeaseDuration)
			release(e, 204, "run-b") // run-a's lease expired: nothing to release
		}},
		{"unknown machine", func(t *testing.T, e *env) {
			renew(e, 404, "run-a")
			release(e, 404, "run-a")
		}},
		{"holder header required", func(t *testing.T, e *env) {
			created(e)
			for _, m := range []string{"PUT", "DELETE"} {
				if msg := e.must(400, e.req(m, lease, nil)).err(); msg.Field != api.HeaderLeaseHolder {
					t.Errorf("%s without a holder: %+v", m, msg)
				}
			}
			e.must(400, e.req("PUT", lease, nil, holder(strings.Repeat("h", 201))...))
		}},
		{"read-only token cannot renew or release", func(t *testing.T, e *env) {
			created(e)
			for _, m := range []string{"PUT", "DELETE"} {
				e.must(403, e.reqCtx(context.Background(), roToken, m, lease, nil, holder("run-a")...))
			}
			e.must(401, e.reqCtx(context.Background(), "", "PUT", lease, nil, holder("run-a")...))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newEnv(t))
		})
	}
}

func TestLeaseDurationConfigurable(t *testing.T) {
	e := newEnv(t, func(c *ServerConfig) { c.LeaseDuration = 3 * time.Second })
	e.must(201, e.req("POST", api.PathMachines, machineReq("m1"), api.HeaderLeaseHolder, "run-a"))
	var l api.Lease
	e.must(200, e.req("PUT", "/v1/machines/m1/lease", nil, api.HeaderLeaseHolder, "run-a")).decode(t, &l)
	if l.DurationSeconds != 3 || !l.ExpiresAt.Equal(e.clock.Now().Add(3*time.Second)) {
		t.Errorf("lease %+v, want 3s from %s", l, e.clock.Now())
	}
	e.clock.Advance(3 * time.Second)
	e.must(200, e.req("PUT", "/v1/machines/m1/lease", nil, api.HeaderLeaseHolder, "run-b"))

	if _, err := NewServer(ServerConfig{Store: e.store, Tokens: e.srv.tokens.Load(), LeaseDuration: -time.Second}); err == nil {
		t.Error("a negative lease duration was accepted")
	}
}
