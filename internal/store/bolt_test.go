package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

var quiet = slog.New(slog.DiscardHandler)

func openTest(t testing.TB, path string, opts BoltOptions) *Bolt {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "agent.db")
	}
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	s, err := OpenBolt(path, opts)
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testMachine(name string, macs ...string) *model.Machine {
	return &model.Machine{
		Name:        name,
		BMC:         model.BMC{Endpoint: "https://10.0.0.5", Username: "admin", Password: "pw-" + name},
		MACs:        macs,
		BootProfile: "debian",
		Params:      map[string]string{"disk": "/dev/sda"},
		State:       model.StateProvisioned,
		Status:      model.Status{Phase: model.PhaseRegistering},
	}
}

func TestMachineCRUD(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", BoltOptions{})

	created, err := s.CreateMachine(ctx, testMachine("m1", "52:54:00:00:00:01"))
	if err != nil {
		t.Fatal(err)
	}
	if created.Version != 1 || created.Revision != 1 {
		t.Fatalf("created version/revision = %d/%d, want 1/1", created.Version, created.Revision)
	}
	if created.CreatedAt.IsZero() || !created.CreatedAt.Equal(created.UpdatedAt) {
		t.Fatalf("created timestamps: %v / %v", created.CreatedAt, created.UpdatedAt)
	}
	if created.BMC.Password != "pw-m1" {
		t.Fatalf("created password = %q, want plaintext pw-m1", created.BMC.Password)
	}
	got, err := s.GetMachine(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, created) {
		t.Fatalf("Get differs from Create:\n got %+v\nwant %+v", got, created)
	}

	_, err = s.CreateMachine(ctx, testMachine("m1"))
	if !errors.Is(err, ErrExists) || err.Error() != `machine "m1": already exists` {
		t.Fatalf("duplicate create: %v", err)
	}
	_, err = s.GetMachine(ctx, "nope")
	if !errors.Is(err, ErrNotFound) || err.Error() != `machine "nope": not found` {
		t.Fatalf("get missing: %v", err)
	}

	steps := []struct {
		name         string
		spec         bool
		mutateErr    error
		wantVersion  uint64
		wantRevision uint64
	}{
		{name: "status write", spec: false, wantVersion: 1, wantRevision: 2},
		{name: "spec write", spec: true, wantVersion: 2, wantRevision: 3},
		{name: "conflict aborts", spec: true, mutateErr: fmt.Errorf("have 1: %w", ErrConflict), wantVersion: 2, wantRevision: 3},
		{name: "another status write", spec: false, wantVersion: 2, wantRevision: 4},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before, _ := s.GetMachine(ctx, "m1")
			m, err := s.UpdateMachine(ctx, "m1", func(m *model.Machine) (bool, error) {
				m.Status.LastError = st.name
				m.Version = 999 // owned by the store; must be ignored
				return st.spec, st.mutateErr
			})
			if st.mutateErr != nil {
				if err != st.mutateErr {
					t.Fatalf("mutate error not returned as is: %v", err)
				}
			} else if err != nil {
				t.Fatal(err)
			} else if m.Status.LastError != st.name {
				t.Fatalf("returned object lacks the mutation")
			}
			after, err := s.GetMachine(ctx, "m1")
			if err != nil {
				t.Fatal(err)
			}
			if after.Version != st.wantVersion || after.Revision != st.wantRevision {
				t.Fatalf("version/revision = %d/%d, want %d/%d", after.Version, after.Revision, st.wantVersion, st.wantRevision)
			}
			if st.mutateErr != nil && !reflect.DeepEqual(before, after) {
				t.Fatalf("aborted update changed the machine")
			}
			if st.mutateErr == nil && (after.UpdatedAt.Before(before.UpdatedAt) || !after.CreatedAt.Equal(before.CreatedAt)) {
				t.Fatalf("timestamps: before %v/%v after %v/%v", before.CreatedAt, before.UpdatedAt, after.CreatedAt, after.UpdatedAt)
			}
		})
	}

	_, err = s.UpdateMachine(ctx, "nope", func(*model.Machine) (bool, error) { return true, nil })
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}

	veto := errors.New("machine is provisioning")
	if err := s.DeleteMachine(ctx, "m1", func(m *model.Machine) error {
		if m.Name != "m1" || m.BMC.Password != "pw-m1" {
			t.Errorf("check saw %q / %q", m.Name, m.BMC.Password)
		}
		return veto
	}); err != veto {
		t.Fatalf("vetoed delete: %v", err)
	}
	if _, err := s.GetMachine(ctx, "m1"); err != nil {
		t.Fatalf("vetoed delete removed the machine: %v", err)
	}
	if err := s.DeleteMachine(ctx, "m1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetMachine(ctx, "m1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if err := s.DeleteMachine(ctx, "m1", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	list, err := s.ListMachines(ctx)
	if err != nil || list == nil || len(list) != 0 {
		t.Fatalf("list after delete = %v, %v; want empty non-nil", list, err)
	}
}

func TestMachineInputRejected(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", BoltOptions{})
	tests := []struct {
		name string
		m    *model.Machine
		want string
	}{
		{"nil", nil, "machine is nil"},
		{"empty name", testMachine(""), `machine "": invalid name`},
		{"upper-case name", testMachine("M1"), `machine "M1": invalid name`},
		{"bad mac", testMachine("m1", "not-a-mac"), `machine "m1": "not-a-mac" is not a 48-bit MAC`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.CreateMachine(ctx, tt.m)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := s.GetMachine(ctx, "m1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rejected machine was stored: %v", err)
	}
}

func TestCreateDoesNotAliasInput(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", BoltOptions{})
	in := testMachine("m1", "52:54:00:AA:00:01")
	out, err := s.CreateMachine(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if in.MACs[0] != "52:54:00:AA:00:01" || in.Version != 0 {
		t.Fatalf("CreateMachine modified its input: %+v", in)
	}
	out.Params["disk"] = "changed"
	got, _ := s.GetMachine(ctx, "m1")
	if got.Params["disk"] != "/dev/sda" {
		t.Fatalf("returned machine shares its map with the store")
	}
}

func TestMACIndex(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", BoltOptions{})
	m1, err := s.CreateMachine(ctx, testMachine("m1", "52-54-00-AA-00-01", "52:54:00:aa:00:02"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"52:54:00:aa:00:01", "52:54:00:aa:00:02"}; !reflect.DeepEqual(m1.MACs, want) {
		t.Fatalf("MACs = %v, want normalised %v", m1.MACs, want)
	}

	lookups := []struct {
		mac     string
		want    string
		wantErr error
	}{
		{"52:54:00:aa:00:01", "m1", nil},
		{"52:54:00:AA:00:02", "m1", nil},
		{"52-54-00-aa-00-01", "m1", nil},
		{"52:54:00:aa:00:09", "", ErrNotFound},
	}
	for _, l := range lookups {
		m, err := s.MachineByMAC(ctx, l.mac)
		if l.wantErr != nil {
			if !errors.Is(err, l.wantErr) {
				t.Errorf("MachineByMAC(%s) err = %v, want %v", l.mac, err, l.wantErr)
			}
			continue
		}
		if err != nil || m.Name != l.want {
			t.Errorf("MachineByMAC(%s) = %v, %v; want %s", l.mac, m, err, l.want)
		}
	}
	if _, err := s.MachineByMAC(ctx, "garbage"); err == nil {
		t.Errorf("MachineByMAC(garbage) succeeded")
	}

	_, err = s.CreateMachine(ctx, testMachine("m2", "52:54:00:AA:00:02"))
	if !errors.Is(err, ErrMACInUse) || !strings.Contains(err.Error(), "52:54:00:aa:00:02") || !strings.Contains(err.Error(), `"m1"`) {
		t.Fatalf("claiming m1's MAC: %v", err)
	}
	if _, err := s.GetMachine(ctx, "m2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("m2 was stored despite the MAC clash")
	}

	m2, err := s.CreateMachine(ctx, testMachine("m2", "52:54:00:aa:00:03"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.UpdateMachine(ctx, "m2", func(m *model.Machine) (bool, error) {
		m.MACs = append(m.MACs, "52:54:00:aa:00:01")
		return true, nil
	})
	if !errors.Is(err, ErrMACInUse) {
		t.Fatalf("update claiming m1's MAC: %v", err)
	}
	if got, _ := s.GetMachine(ctx, "m2"); !reflect.DeepEqual(got, m2) {
		t.Fatalf("failed update changed m2")
	}

	// m1 gives up :02 (and keeps :01); m2 can then take it.
	if _, err := s.UpdateMachine(ctx, "m1", func(m *model.Machine) (bool, error) {
		m.MACs = []string{"52:54:00:aa:00:01"}
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MachineByMAC(ctx, "52:54:00:aa:00:02"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("released MAC still indexed: %v", err)
	}
	if _, err := s.UpdateMachine(ctx, "m2", func(m *model.Machine) (bool, error) {
		m.MACs = append(m.MACs, "52:54:00:AA:00:02")
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if m, err := s.MachineByMAC(ctx, "52:54:00:aa:00:02"); err != nil || m.Name != "m2" {
		t.Fatalf("MAC after move: %v, %v", m, err)
	}

	if err := s.DeleteMachine(ctx, "m1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MachineByMAC(ctx, "52:54:00:aa:00:01"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted machine's MAC still indexed: %v", err)
	}
	if _, err := s.CreateMachine(ctx, testMachine("m3", "52:54:00:aa:00:01")); err != nil {
		t.Fatalf("reusing a deleted machine's MAC: %v", err)
	}
}

func TestConcurrentUpdatesLoseNothing(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", BoltOptions{})
	if _, err := s.CreateMachine(ctx, testMachine("m1")); err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 10
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				_, err := s.UpdateMachine(ctx, "m1", func(m *model.Machine) (bool, error) {
					m.Params[fmt.Sprintf("w%d-%d", w, i)] = "x"
					return w%2 == 0, nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	m, err := s.GetMachine(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Params) != 1+workers*each {
		t.Fatalf("params = %d, want %d: writes were lost", len(m.Params), 1+workers*each)
	}
	if m.Revision != 1+workers*each || m.Version != 1+workers/2*each {
		t.Fatalf("revision/version = %d/%d, want %d/%d", m.Revision, m.Version, 1+workers*each, 1+workers/2*each)
	}
}

func TestProfiles(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", BoltOptions{})
	p, err := s.CreateProfile(ctx, &model.BootProfile{Name: "debian", Kernel: "http://x/linux", Templates: map[string]string{"preseed": "d-i"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 1 || p.CreatedAt.IsZero() {
		t.Fatalf("created profile %+v", p)
	}
	if _, err := s.CreateProfile(ctx, &model.BootProfile{Name: "debian"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	p, err = s.UpdateProfile(ctx, "debian", func(p *model.BootProfile) error {
		p.Cmdline = "console=ttyS0"
		return nil
	})
	if err != nil || p.Version != 2 {
		t.Fatalf("update: %+v, %v", p, err)
	}
	if _, err := s.UpdateProfile(ctx, "debian", func(*model.BootProfile) error { return ErrConflict }); err != ErrConflict {
		t.Fatalf("conflict: %v", err)
	}
	got, err := s.GetProfile(ctx, "debian")
	if err != nil || !reflect.DeepEqual(got, p) {
		t.Fatalf("get = %+v, %v; want %+v", got, err, p)
	}
	if _, err := s.CreateProfile(ctx, &model.BootProfile{Name: "alpine"}); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListProfiles(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "alpine" || list[1].Name != "debian" {
		t.Fatalf("list = %v, %v", list, err)
	}
	inUse := errors.New("profile in use by m1")
	if err := s.DeleteProfile(ctx, "debian", func(*model.BootProfile) error { return inUse }); err != inUse {
		t.Fatalf("veto: %v", err)
	}
	if err := s.DeleteProfile(ctx, "debian", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetProfile(ctx, "debian"); !errors.Is(err, ErrNotFound) || err.Error() != `profile "debian": not found` {
		t.Fatalf("get deleted: %v", err)
	}
	if err := s.DeleteProfile(ctx, "debian", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
}

func TestClusters(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", BoltOptions{})
	c, err := s.CreateCluster(ctx, &model.Cluster{
		Name:    "k8s",
		Members: []model.ClusterMember{{Machine: "m1", Role: "cp"}},
		Roles:   []model.ClusterRole{{Name: "cp", BootProfile: "debian"}},
		Rollout: model.Rollout{MaxUnavailable: 1},
	})
	if err != nil || c.Version != 1 || c.Revision != 1 {
		t.Fatalf("create: %+v, %v", c, err)
	}
	if _, err := s.CreateCluster(ctx, &model.Cluster{Name: "k8s"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	c, err = s.UpdateCluster(ctx, "k8s", func(c *model.Cluster) (bool, error) {
		c.Status.Phase = "converging"
		return false, nil
	})
	if err != nil || c.Version != 1 || c.Revision != 2 {
		t.Fatalf("status update: %+v, %v", c, err)
	}
	c, err = s.UpdateCluster(ctx, "k8s", func(c *model.Cluster) (bool, error) {
		c.Rollout.MaxUnavailable = 2
		return true, nil
	})
	if err != nil || c.Version != 2 || c.Revision != 3 {
		t.Fatalf("spec update: %+v, %v", c, err)
	}
	got, err := s.GetCluster(ctx, "k8s")
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("get = %+v, %v", got, err)
	}
	list, err := s.ListClusters(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %v, %v", list, err)
	}
	busy := errors.New("cluster has members")
	if err := s.DeleteCluster(ctx, "k8s", func(c *model.Cluster) error {
		if len(c.Members) != 1 {
			t.Errorf("check saw %+v", c)
		}
		return busy
	}); err != busy {
		t.Fatalf("vetoed delete: %v", err)
	}
	if err := s.DeleteCluster(ctx, "k8s", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetCluster(ctx, "k8s"); !errors.Is(err, ErrNotFound) || err.Error() != `cluster "k8s": not found` {
		t.Fatalf("get deleted: %v", err)
	}
	if err := s.DeleteCluster(ctx, "k8s", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
	if _, err := s.UpdateCluster(ctx, "k8s", func(*model.Cluster) (bool, error) { return true, nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}
}

func TestEvents(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", BoltOptions{MaxEventsPerMachine: 5, MaxAgentEvents: 3})
	for _, n := range []string{"m1", "m2"} {
		if _, err := s.CreateMachine(ctx, testMachine(n)); err != nil {
			t.Fatal(err)
		}
	}
	var last uint64
	appendEv := func(machine, msg string) model.Event {
		t.Helper()
		e, err := s.AppendEvent(ctx, model.Event{Machine: machine, Type: model.EventPhaseChanged, Message: msg})
		if err != nil {
			t.Fatal(err)
		}
		if e.Seq <= last || e.Time.IsZero() {
			t.Fatalf("event %+v: seq not increasing past %d or no time", e, last)
		}
		last = e.Seq
		return e
	}
	var m1Seqs []uint64
	for i := range 8 {
		m1Seqs = append(m1Seqs, appendEv("m1", fmt.Sprint("m1-", i)).Seq)
		appendEv("m2", fmt.Sprint("m2-", i))
		if i%2 == 0 {
			appendEv("", fmt.Sprint("agent-", i))
		}
	}
	fixed := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e, err := s.AppendEvent(ctx, model.Event{Machine: "m2", Type: "x", Time: fixed})
	if err != nil || !e.Time.Equal(fixed) {
		t.Fatalf("explicit time: %+v, %v", e, err)
	}

	seqs := func(evs []model.Event) []uint64 {
		out := []uint64{}
		for _, e := range evs {
			out = append(out, e.Seq)
		}
		return out
	}
	tests := []struct {
		name    string
		machine string
		after   uint64
		limit   int
		want    []uint64
		wantMsg []string
	}{
		{name: "capped to newest 5", machine: "m1", want: m1Seqs[3:]},
		{name: "limit", machine: "m1", limit: 2, want: m1Seqs[3:5]},
		{name: "cursor", machine: "m1", after: m1Seqs[5], want: m1Seqs[6:]},
		{name: "cursor between seqs", machine: "m1", after: m1Seqs[5] + 1, want: m1Seqs[6:]},
		{name: "cursor at end", machine: "m1", after: m1Seqs[7], want: []uint64{}},
		{name: "cursor max", machine: "m1", after: ^uint64(0), want: []uint64{}},
		{name: "agent-wide capped to 3", machine: "", wantMsg: []string{"agent-2", "agent-4", "agent-6"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := s.ListEvents(ctx, tt.machine, tt.after, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				if e.Machine != tt.machine {
					t.Fatalf("event of %q in %q's log", e.Machine, tt.machine)
				}
			}
			if tt.want != nil && !reflect.DeepEqual(seqs(evs), tt.want) {
				t.Fatalf("seqs = %v, want %v", seqs(evs), tt.want)
			}
			if tt.wantMsg != nil {
				var msgs []string
				for _, e := range evs {
					msgs = append(msgs, e.Message)
				}
				if !reflect.DeepEqual(msgs, tt.wantMsg) {
					t.Fatalf("messages = %v, want %v", msgs, tt.wantMsg)
				}
			}
		})
	}

	if _, err := s.AppendEvent(ctx, model.Event{Machine: "ghost", Type: "x"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("event for unknown machine: %v", err)
	}
	if _, err := s.ListEvents(ctx, "ghost", 0, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("list for unknown machine: %v", err)
	}

	// Deleting a machine drops its log: a machine re-created under the name
	// starts with none.
	if err := s.DeleteMachine(ctx, "m1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateMachine(ctx, testMachine("m1")); err != nil {
		t.Fatal(err)
	}
	evs, err := s.ListEvents(ctx, "m1", 0, 0)
	if err != nil || len(evs) != 0 {
		t.Fatalf("re-created machine's events = %v, %v", evs, err)
	}
	after := appendEv("m1", "fresh")
	if after.Seq <= m1Seqs[7] {
		t.Fatalf("seq went backwards after delete")
	}
	if evs, _ := s.ListEvents(ctx, "m2", 0, 100); len(evs) != 5 {
		t.Fatalf("m2 log = %d events, want 5 (untouched by m1's delete)", len(evs))
	}
}

func TestPersistenceAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "agent.db")
	s, err := OpenBolt(path, BoltOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m := testMachine("m1", "52:54:00:00:00:01")
	m.Run = &model.Run{ID: "r1", Token: "tok-secret", Profile: "debian", StartedAt: time.Now().UTC()}
	if _, err := s.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	want, err := s.UpdateMachine(ctx, "m1", func(m *model.Machine) (bool, error) {
		m.Status.Phase = model.PhaseProvisioning
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.CreateProfile(ctx, &model.BootProfile{Name: "debian", Kernel: "k"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.CreateCluster(ctx, &model.Cluster{Name: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := s.AppendEvent(ctx, model.Event{Machine: "m1", Type: model.EventRunStarted})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s = openTest(t, path, BoltOptions{})
	got, err := s.GetMachine(ctx, "m1")
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("machine after reopen = %+v, %v\nwant %+v", got, err, want)
	}
	if got.BMC.Password != "pw-m1" || got.Run.Token != "tok-secret" {
		t.Fatalf("secrets after reopen: %q %q", got.BMC.Password, got.Run.Token)
	}
	if byMAC, err := s.MachineByMAC(ctx, "52:54:00:00:00:01"); err != nil || byMAC.Name != "m1" {
		t.Fatalf("MAC index after reopen: %v, %v", byMAC, err)
	}
	if gp, err := s.GetProfile(ctx, "debian"); err != nil || !reflect.DeepEqual(gp, p) {
		t.Fatalf("profile after reopen: %+v, %v", gp, err)
	}
	if gc, err := s.GetCluster(ctx, "c1"); err != nil || !reflect.DeepEqual(gc, c) {
		t.Fatalf("cluster after reopen: %+v, %v", gc, err)
	}
	evs, err := s.ListEvents(ctx, "m1", 0, 0)
	if err != nil || len(evs) != 1 || !reflect.DeepEqual(evs[0], ev) {
		t.Fatalf("events after reopen: %+v, %v", evs, err)
	}
	next, err := s.AppendEvent(ctx, model.Event{Type: "x"})
	if err != nil || next.Seq != ev.Seq+1 {
		t.Fatalf("seq after reopen = %d, %v; want %d", next.Seq, err, ev.Seq+1)
	}
}

func TestSubscribe(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", BoltOptions{})
	ch, cancel := s.Subscribe()

	if _, err := s.CreateMachine(ctx, testMachine("m1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateMachine(ctx, "m1", func(*model.Machine) (bool, error) { return false, nil }); err != nil {
		t.Fatal(err)
	}
	// An aborted write publishes nothing.
	if _, err := s.UpdateMachine(ctx, "m1", func(*model.Machine) (bool, error) { return false, ErrConflict }); err == nil {
		t.Fatal("conflict not returned")
	}
	ev, err := s.AppendEvent(ctx, model.Event{Machine: "m1", Type: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateProfile(ctx, &model.BootProfile{Name: "p1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateCluster(ctx, &model.Cluster{Name: "c1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMachine(ctx, "m1", nil); err != nil {
		t.Fatal(err)
	}
	want := []Change{
		{Kind: KindMachine, Name: "m1", Revision: 1},
		{Kind: KindMachine, Name: "m1", Revision: 2},
		{Kind: KindEvent, Name: "m1", Revision: ev.Seq},
		{Kind: KindProfile, Name: "p1", Revision: 1},
		{Kind: KindCluster, Name: "c1", Revision: 1},
		{Kind: KindMachine, Name: "m1", Revision: 2, Deleted: true},
	}
	for i, w := range want {
		select {
		case got := <-ch:
			if got != w {
				t.Fatalf("change %d = %+v, want %+v", i, got, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("change %d never arrived", i)
		}
	}
	select {
	case got := <-ch:
		t.Fatalf("unexpected change %+v", got)
	default:
	}
	cancel()
	if _, ok := <-ch; ok {
		t.Fatal("channel open after cancel")
	}
	cancel() // idempotent
}

func TestSubscribeOverflowResync(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", BoltOptions{})
	slow, cancelSlow := s.Subscribe()
	defer cancelSlow()
	if _, err := s.CreateMachine(ctx, testMachine("m1")); err != nil {
		t.Fatal(err)
	}
	const writes = subscriberBuffer + 50
	for range writes - 1 {
		if _, err := s.UpdateMachine(ctx, "m1", func(*model.Machine) (bool, error) { return false, nil }); err != nil {
			t.Fatal(err)
		}
	}
	// A subscriber joining late sees only what follows, unaffected by the
	// slow one.
	fast, cancelFast := s.Subscribe()
	defer cancelFast()

	for i := range subscriberBuffer {
		c := <-slow
		if c.Kind != KindMachine || c.Revision != uint64(i+1) {
			t.Fatalf("buffered change %d = %+v", i, c)
		}
	}
	select {
	case c := <-slow:
		t.Fatalf("dropped changes were delivered: %+v", c)
	default:
	}
	if _, err := s.UpdateMachine(ctx, "m1", func(*model.Machine) (bool, error) { return false, nil }); err != nil {
		t.Fatal(err)
	}
	if c := <-slow; c != (Change{}) {
		t.Fatalf("after overflow got %+v, want resync Change{}", c)
	}
	if c := <-slow; c.Revision != writes+1 {
		t.Fatalf("after resync got %+v, want revision %d", c, writes+1)
	}
	if c := <-fast; c.Kind != KindMachine || c.Revision != writes+1 {
		t.Fatalf("fast subscriber got %+v", c)
	}
}

func TestCloseEndsSubscriptions(t *testing.T) {
	s := openTest(t, "", BoltOptions{})
	ch, cancel := s.Subscribe()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-ch; ok {
		t.Fatal("channel open after Close")
	}
	cancel()
	late, _ := s.Subscribe()
	if _, ok := <-late; ok {
		t.Fatal("subscription after Close is open")
	}
	if _, err := s.GetMachine(context.Background(), "m1"); err == nil {
		t.Fatal("read after Close succeeded")
	}
}

func TestContextCancelled(t *testing.T) {
	s := openTest(t, "", BoltOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.CreateMachine(ctx, testMachine("m1")); !errors.Is(err, context.Canceled) {
		t.Fatalf("create: %v", err)
	}
	if _, err := s.ListMachines(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("list: %v", err)
	}
}

func TestLockedByAnotherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	openTest(t, path, BoltOptions{})
	start := time.Now()
	s2, err := OpenBolt(path, BoltOptions{LockTimeout: 200 * time.Millisecond, Logger: quiet})
	if err == nil {
		s2.Close()
		t.Fatal("second open of a locked file succeeded")
	}
	want := fmt.Sprintf("data file %s is locked by another baremetal-agent", path)
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to contain %q", err, want)
	}
	// bbolt polls the lock every 50ms and stops one poll short of the timeout.
	if waited := time.Since(start); waited < 100*time.Millisecond {
		t.Fatalf("gave up after %v, not waiting for the lock timeout", waited)
	}
}

func TestOpenRejectsForeignFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("not a bbolt file\n"), 512), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenBolt(path, BoltOptions{Logger: quiet})
	if err == nil {
		s.Close()
		t.Fatal("opened a file that is not a bbolt database")
	}
	if !strings.Contains(err.Error(), "opening data file "+path) {
		t.Fatalf("err = %v, want it to name the file", err)
	}
}

// Corrupt records must produce errors naming the object, never a panic.
func TestCorruptRecords(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", BoltOptions{})
	if _, err := s.CreateMachine(ctx, testMachine("good", "52:54:00:00:00:07")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateMachine(ctx, testMachine("bad", "52:54:00:00:00:08")); err != nil {
		t.Fatal(err)
	}
	raw := func(bucket []byte, key, val string) {
		t.Helper()
		if err := s.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucket).Put([]byte(key), []byte(val))
		}); err != nil {
			t.Fatal(err)
		}
	}
	raw(bucketMachines, "bad", `{"machine": {"name": "bad", "macs": [1`)
	raw(bucketMachines, "null", `{"sealed":{}}`)
	raw(bucketMachines, "renamed", `{"machine":{"name":"other"}}`)
	raw(bucketProfiles, "p1", `not json`)
	raw(bucketClusters, "c1", `[]`)
	if err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketEvents).CreateBucketIfNotExists([]byte("good"))
		if err != nil {
			return err
		}
		return b.Put(be64(42), []byte(`{"seq":`))
	}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"get machine", func() error { _, err := s.GetMachine(ctx, "bad"); return err }, `machine "bad": stored record is corrupt`},
		{"machine without body", func() error { _, err := s.GetMachine(ctx, "null"); return err }, `machine "null": stored record is corrupt: no machine`},
		{"machine under wrong key", func() error { _, err := s.GetMachine(ctx, "renamed"); return err }, `machine "renamed": stored record is corrupt: record names machine "other"`},
		{"by mac", func() error { _, err := s.MachineByMAC(ctx, "52:54:00:00:00:08"); return err }, `machine "bad": stored record is corrupt`},
		{"list machines", func() error { _, err := s.ListMachines(ctx); return err }, `machine "bad": stored record is corrupt`},
		{"update machine", func() error {
			_, err := s.UpdateMachine(ctx, "bad", func(*model.Machine) (bool, error) { return true, nil })
			return err
		}, `machine "bad": stored record is corrupt`},
		{"get profile", func() error { _, err := s.GetProfile(ctx, "p1"); return err }, `profile "p1": stored record is corrupt`},
		{"list profiles", func() error { _, err := s.ListProfiles(ctx); return err }, `profile "p1": stored record is corrupt`},
		{"get cluster", func() error { _, err := s.GetCluster(ctx, "c1"); return err }, `cluster "c1": stored record is corrupt`},
		{"events", func() error { _, err := s.ListEvents(ctx, "good", 0, 0); return err }, `event 42 of machine "good": stored record is corrupt`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}

	// A vetting delete cannot run its check on an unreadable record; a plain
	// delete clears it out, MAC entry included.
	if err := s.DeleteMachine(ctx, "bad", func(*model.Machine) error { return nil }); err == nil {
		t.Fatal("checked delete of a corrupt record succeeded")
	}
	if err := s.DeleteMachine(ctx, "bad", nil); err != nil {
		t.Fatalf("plain delete of a corrupt record: %v", err)
	}
	if _, err := s.MachineByMAC(ctx, "52:54:00:00:00:08"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("corrupt machine's MAC still indexed: %v", err)
	}
	if err := s.DeleteProfile(ctx, "p1", nil); err != nil {
		t.Fatalf("plain delete of a corrupt profile: %v", err)
	}
	if m, err := s.MachineByMAC(ctx, "52:54:00:00:00:07"); err != nil || m.Name != "good" {
		t.Fatalf("good machine: %v, %v", m, err)
	}
}
