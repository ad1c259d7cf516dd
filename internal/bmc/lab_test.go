package bmc

import (
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

func startLab(t *testing.T, machines int) (*lab.Lab, []lab.InventoryEntry, string) {
	t.Helper()
	l, err := lab.New(lab.Config{Machines: machines, PasswordSeed: "bmc-test",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(l.Handler())
	t.Cleanup(func() {
		srv.Close()
		_ = l.Close()
	})
	return l, l.Inventory(srv.URL), srv.URL
}

func labBMC(e lab.InventoryEntry) model.BMC {
	return model.BMC{Endpoint: e.Endpoint, Username: e.Username, Password: e.Password}
}

// TestLabMemoryBackend drives emulated systems of the lab through power and
// boot override, each with its own credentials on one Redfish service.
func TestLabMemoryBackend(t *testing.T) {
	l, inv, base := startLab(t, 3)
	m := NewManager(testConfig())
	ctx := testCtx(t)
	for _, e := range inv[:2] {
		c, sys := labBMC(e), l.System(e.Name)
		steps := []struct {
			do    func() error
			power string
			boot  lab.BootOverride
		}{
			{func() error { return m.SetBootOverride(ctx, c, BootPXE, false, BootModeKeep) }, "Off", lab.BootOverride{Target: "Pxe", Enabled: "Once", Mode: "UEFI"}},
			// A one-time override is used up by the boot it applied to.
			{func() error { return m.Power(ctx, c, PowerOn) }, "On", lab.BootOverride{Target: "None", Enabled: "Disabled", Mode: "UEFI"}},
			{func() error { return m.SetBootOverride(ctx, c, BootDisk, true, BootModeKeep) }, "On", lab.BootOverride{Target: "Hdd", Enabled: "Continuous", Mode: "UEFI"}},
			{func() error { return m.Power(ctx, c, PowerForceRestart) }, "On", lab.BootOverride{Target: "Hdd", Enabled: "Continuous", Mode: "UEFI"}},
			{func() error { return m.Power(ctx, c, PowerGracefulShutdown) }, "Off", lab.BootOverride{Target: "Hdd", Enabled: "Continuous", Mode: "UEFI"}},
		}
		for i, s := range steps {
			if err := s.do(); err != nil {
				t.Fatalf("%s step %d: %v", e.Name, i, err)
			}
			if got := sys.PowerState(); got != s.power {
				t.Errorf("%s step %d: lab power %s, want %s", e.Name, i, got, s.power)
			}
			if got := sys.BootOverride(); got != s.boot {
				t.Errorf("%s step %d: lab boot %+v, want %+v", e.Name, i, got, s.boot)
			}
		}
		got, err := m.Inventory(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.NICs) != 1 || got.NICs[0].MAC != e.MAC || got.NICs[0].SpeedMbps == 0 || got.PowerState != "Off" ||
			got.UUID == "" || got.Serial == "" || got.CPUs == 0 || got.MemoryGiB == 0 {
			t.Errorf("%s inventory %+v, want MAC %s", e.Name, got, e.MAC)
		}
		// Disks come from Storage/Drives here (the DMTF capture covers SimpleStorage).
		if len(got.Disks) != 1 || got.Disks[0].Serial != got.Serial+"-D0" || got.Disks[0].SizeGiB < 1 || got.Disks[0].MediaType == "" {
			t.Errorf("%s disks %+v", e.Name, got.Disks)
		}
	}
	if got := l.System(inv[2].Name).PowerState(); got != "Off" {
		t.Errorf("untouched %s is %s", inv[2].Name, got)
	}

	// Each system is its own BMC: machine 1's account does not open machine 2.
	cross := labBMC(inv[1])
	cross.Username, cross.Password = inv[0].Username, inv[0].Password
	if err := m.Power(ctx, cross, PowerOn); err == nil || !strings.Contains(err.Error(), "login refused (401)") {
		t.Errorf("foreign credentials: %v", err)
	}
	// The lab serves all its systems on one service: a host-only endpoint
	// cannot know which is meant.
	hostOnly := labBMC(inv[0])
	hostOnly.Endpoint = base
	if _, err := m.PowerState(ctx, hostOnly); err == nil || !strings.Contains(err.Error(), "manages 3 systems") {
		t.Errorf("host-only endpoint on the lab: %v", err)
	}
	m.Close(ctx)
}

func TestLabFaults(t *testing.T) {
	tests := []struct {
		name  string
		fault lab.Fault
		run   func(m *Manager, c model.BMC) error
		check func(t *testing.T, err error, l *lab.Lab, name string)
	}{
		{
			name:  "503s then success",
			fault: lab.Fault{Fail503Next: 3},
			run:   func(m *Manager, c model.BMC) error { return m.Power(testCtx(t), c, PowerOn) },
			check: func(t *testing.T, err error, l *lab.Lab, name string) {
				if err != nil {
					t.Fatal(err)
				}
				var n503 int
				for _, r := range l.Requests() {
					if r.System == name && r.Status == 503 {
						n503++
					}
				}
				if n503 != 3 || l.System(name).PowerState() != "On" {
					t.Errorf("%d 503s answered, power %s", n503, l.System(name).PowerState())
				}
			},
		},
		{
			name:  "refused login",
			fault: lab.Fault{RefuseLogin: true},
			run:   func(m *Manager, c model.BMC) error { return m.Power(testCtx(t), c, PowerOn) },
			check: func(t *testing.T, err error, l *lab.Lab, name string) {
				if err == nil || !strings.HasSuffix(err.Error(), ": login refused (401): check the username and password; 1 attempt in the last 1 minute") {
					t.Errorf("error %v", err)
				}
			},
		},
		{
			name:  "reverting boot override",
			fault: lab.Fault{RevertBootOverride: true},
			run: func(m *Manager, c model.BMC) error {
				return m.SetBootOverride(testCtx(t), c, BootPXE, false, BootModeKeep)
			},
			check: func(t *testing.T, err error, l *lab.Lab, name string) {
				if !errors.Is(err, ErrOverrideReverted) {
					t.Errorf("error %v, want ErrOverrideReverted", err)
				}
			},
		},
		{
			name:  "ignored power action",
			fault: lab.Fault{IgnorePower: true},
			run:   func(m *Manager, c model.BMC) error { return m.Power(testCtx(t), c, PowerOn) },
			check: func(t *testing.T, err error, l *lab.Lab, name string) {
				if err == nil || !strings.Contains(err.Error(), `still reports PowerState "Off"`) || !IsRetryable(err) {
					t.Errorf("error %v, want a retryable one saying the power did not follow", err)
				}
			},
		},
		{
			name:  "lazy power sensor",
			fault: lab.Fault{LiePowerStateFor: 100 * time.Millisecond},
			run:   func(m *Manager, c model.BMC) error { return m.Power(testCtx(t), c, PowerOn) },
			check: func(t *testing.T, err error, l *lab.Lab, name string) {
				if err != nil {
					t.Error(err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, inv, _ := startLab(t, 1)
			l.SetFault(inv[0].Name, tt.fault)
			cfg := testConfig()
			cfg.PowerWaitTimeout = 500 * time.Millisecond
			tt.check(t, tt.run(NewManager(cfg), labBMC(inv[0])), l, inv[0].Name)
		})
	}
}

// TestLabSerialisesPerSystem checks, with the lab's request log, that
// concurrent operations on one system never overlap while another system's
// do.
func TestLabSerialisesPerSystem(t *testing.T) {
	l, inv, _ := startLab(t, 2)
	for _, e := range inv {
		l.SetFault(e.Name, lab.Fault{Latency: 3 * time.Millisecond})
	}
	m := NewManager(testConfig())
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := inv[i%2]
			a := PowerOn
			if i%4 >= 2 {
				a = PowerForceOff
			}
			if err := m.Power(ctx, labBMC(e), a); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	bySystem := map[string][]lab.RequestRecord{}
	for _, r := range l.Requests() {
		if r.System != "" {
			bySystem[r.System] = append(bySystem[r.System], r)
		}
	}
	for name, recs := range bySystem {
		slices.SortFunc(recs, func(a, b lab.RequestRecord) int { return a.Start.Compare(b.Start) })
		for i := 1; i < len(recs); i++ {
			if recs[i].Start.Before(recs[i-1].End) {
				t.Errorf("%s: %s %s overlapped %s %s", name, recs[i].Method, recs[i].Path, recs[i-1].Method, recs[i-1].Path)
			}
		}
	}
	a, b := bySystem[inv[0].Name], bySystem[inv[1].Name]
	if len(a) == 0 || len(b) == 0 {
		t.Fatal("no requests logged")
	}
	if !a[0].Start.Before(b[len(b)-1].End) || !b[0].Start.Before(a[len(a)-1].End) {
		t.Error("the two systems were driven one after the other, not in parallel")
	}
}
