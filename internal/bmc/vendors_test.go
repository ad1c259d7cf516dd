package bmc

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

func testConfig() Config {
	return Config{
		PollInterval:     2 * time.Millisecond,
		RetryBase:        2 * time.Millisecond,
		RetryMax:         20 * time.Millisecond,
		PowerWaitTimeout: 2 * time.Second,
		GracefulTimeout:  100 * time.Millisecond,
		RequestTimeout:   5 * time.Second,
		ConnectTimeout:   2 * time.Second,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestVendorCaptures drives each real vendor capture through inventory,
// power and boot override, and checks what went over the wire.
func TestVendorCaptures(t *testing.T) {
	tests := []struct {
		capture string
		want    model.Inventory // identity only: TestCaptureInventory checks the figures
		macs    []string
		links   []string
		disks   []model.Disk
		// resets expected for: GracefulShutdown, ForceOff (no-op), On,
		// On (no-op), PowerCycle, ForceRestart.
		resets   []string
		mode     string // BootSourceOverrideMode sent; "" when the system reports none
		ifMatch  bool
		endpoint func(base, sysPath string) string
	}{
		{
			capture: "dmtf-public-rackmount1",
			want: model.Inventory{Manufacturer: "Contoso", Model: "3500", Serial: "437XR1138R2",
				UUID: "38947555-7742-3448-3784-823347823834", BIOSVersion: "P79 v1.45 (12/06/2017)", PowerState: "On"},
			// VLAN1 (virtual, repeats NIC 1's MAC) and ToManager (the Redfish
			// host interface) are not host ports.
			macs:  []string{"12:44:6a:3b:04:11", "aa:bb:cc:dd:ee:00"},
			links: []string{"LinkUp", "LinkUp"},
			disks: []model.Disk{{Name: "SATA Bay 1", Model: "3000GT8", SizeGiB: 7450.58},
				{Name: "SATA Bay 2", Model: "3000GT7", SizeGiB: 3725.29}},
			resets:   []string{"GracefulShutdown", "On", "ForceRestart", "ForceRestart"},
			mode:     "UEFI",
			endpoint: func(base, _ string) string { return base },
		},
		{
			capture: "hpegen10",
			want: model.Inventory{Manufacturer: "HPE", Model: "ProLiant BL460c Gen10", Serial: "CZ37464KL6",
				UUID: "34333638-3234-5A43-3337-3436344B4C36", BIOSVersion: "I41 v2.10 (05/21/2019)", PowerState: "On"},
			macs:  []string{"f4:03:43:a8:33:80", "f4:03:43:a8:33:88"},
			links: []string{"", ""},
			// iLO 5 lists its disk only under the OEM SmartStorage tree; the
			// standard Storage collection is empty.
			disks: nil,
			// No GracefulShutdown and no PowerCycle in iLO's list.
			resets:  []string{"ForceOff", "On", "ForceRestart", "ForceRestart"},
			mode:    "UEFI",
			ifMatch: true,
			// iLO's links end in a slash; a Metal3-style system URL works too.
			endpoint: func(base, sysPath string) string { return base + sysPath + "/" },
		},
		{
			capture: "supermicroX10",
			want: model.Inventory{Manufacturer: "Supermicro", Model: "SYS-F618H6-FTPTL+", Serial: "E232710X7B01440",
				UUID: "00000000-0000-0000-0000-0CC47AB721C6", BIOSVersion: "3.1c", PowerState: "On"},
			macs:     []string{"0c:c4:7a:b7:21:c6", "0c:c4:7a:b7:21:c7"},
			links:    []string{"", ""},
			resets:   []string{"GracefulShutdown", "On", "ForceRestart", "ForceRestart"},
			mode:     "",
			endpoint: func(base, _ string) string { return base + "/" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.capture, func(t *testing.T) {
			mock := newMockBMC(t, tt.capture, "admin", "vendor-pass")
			srv := httptest.NewServer(mock)
			defer srv.Close()
			m := NewManager(testConfig())
			ctx := testCtx(t)
			c := model.BMC{Endpoint: tt.endpoint(srv.URL, mock.sysPath), Username: "admin", Password: "vendor-pass"}

			inv, err := m.Inventory(ctx, c)
			if err != nil {
				t.Fatalf("Inventory: %v", err)
			}
			if inv.CollectedAt.IsZero() {
				t.Error("CollectedAt not set")
			}
			got := model.Inventory{Manufacturer: inv.Manufacturer, Model: inv.Model, Serial: inv.Serial, UUID: inv.UUID,
				BIOSVersion: inv.BIOSVersion, PowerState: inv.PowerState}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("inventory\n got %+v\nwant %+v", got, tt.want)
			}
			var macs, links []string
			for _, n := range inv.NICs {
				macs, links = append(macs, n.MAC), append(links, n.LinkState)
			}
			if !slices.Equal(macs, tt.macs) || !slices.Equal(links, tt.links) {
				t.Errorf("NICs %+v, want MACs %v links %v", inv.NICs, tt.macs, tt.links)
			}
			if !reflect.DeepEqual(inv.Disks, tt.disks) {
				t.Errorf("disks %+v, want %+v", inv.Disks, tt.disks)
			}

			for _, a := range []PowerAction{PowerGracefulShutdown, PowerForceOff, PowerOn, PowerOn, PowerCycle, PowerForceRestart} {
				if err := m.Power(ctx, c, a); err != nil {
					t.Fatalf("Power %s: %v", a, err)
				}
				st, err := m.PowerState(ctx, c)
				if err != nil || st != string(wantedState(a)) {
					t.Fatalf("after %s: PowerState %q, %v", a, st, err)
				}
			}
			resets, _, _ := mock.snapshot()
			if !slices.Equal(resets, tt.resets) {
				t.Errorf("reset types sent %v, want %v", resets, tt.resets)
			}
			for _, r := range resets {
				if !slices.Contains(mock.allowed, r) {
					t.Errorf("sent %s, not in the allowable values %v", r, mock.allowed)
				}
			}
			if len(mock.rejected) > 0 {
				t.Errorf("BMC rejected reset types %v", mock.rejected)
			}

			for i, step := range []struct {
				target     BootTarget
				persistent bool
				enabled    string
			}{{BootPXE, false, "Once"}, {BootDisk, true, "Continuous"}} {
				if err := m.SetBootOverride(ctx, c, step.target, step.persistent, BootModeKeep); err != nil {
					t.Fatalf("SetBootOverride %s: %v", step.target, err)
				}
				_, patches, _ := mock.snapshot()
				if len(patches) != i+1 {
					t.Fatalf("%d PATCHes, want %d", len(patches), i+1)
				}
				p := patches[i]
				want := map[string]any{"BootSourceOverrideTarget": string(step.target), "BootSourceOverrideEnabled": step.enabled}
				if tt.mode != "" {
					want["BootSourceOverrideMode"] = tt.mode
				}
				if !reflect.DeepEqual(p.Body, map[string]any{"Boot": want}) {
					t.Errorf("PATCH body %v, want one Boot object %v", p.Body, want)
				}
				if p.HasIf != tt.ifMatch {
					t.Errorf("If-Match sent=%v (%q), want %v", p.HasIf, p.IfMatch, tt.ifMatch)
				}
			}

			mock.mu.Lock()
			posts := mock.sessionPosts
			mock.mu.Unlock()
			if posts != 1 {
				t.Errorf("%d session logins, want 1 reused session", posts)
			}
			m.Close(ctx)
			mock.mu.Lock()
			defer mock.mu.Unlock()
			if len(mock.deletes) != 1 || len(mock.sessions) != 0 {
				t.Errorf("Close: session DELETEs %v, live sessions %d; want one logout", mock.deletes, len(mock.sessions))
			}
		})
	}
}
