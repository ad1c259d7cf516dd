package lab

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/schemas"
)

// TestGofishDrivesTheLab proves a real Redfish client works against the
// lab: sessions and basic auth, reading a system and its NICs and drives,
// Reset and SetBoot (which PATCHes with the ETag as If-Match).
func TestGofishDrivesTheLab(t *testing.T) {
	for _, basic := range []bool{false, true} {
		name := "session"
		if basic {
			name = "basic auth"
		}
		t.Run(name, func(t *testing.T) {
			l, srv := newTestLab(t, Config{Machines: 3})
			inv := l.Inventory(srv.URL)[1]
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := gofish.ConnectContext(ctx, gofish.ClientConfig{
				Endpoint: srv.URL, Username: inv.Username, Password: inv.Password,
				BasicAuth: basic, HTTPClient: srv.Client(),
			})
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			sess, _ := c.GetSession()
			if basic != (sess == nil) {
				t.Fatalf("basic=%v but session %+v", basic, sess)
			}

			sys, err := schemas.GetComputerSystem(c, "/redfish/v1/Systems/"+inv.Name)
			if err != nil {
				t.Fatalf("get system: %v", err)
			}
			if sys.ID != inv.Name || sys.Manufacturer != "OpenBareMetal Lab" || sys.PowerState != schemas.OffPowerState || sys.UUID == "" || sys.SerialNumber == "" {
				t.Fatalf("system %+v", sys)
			}
			if sys.GetETag() == "" {
				t.Fatal("gofish saw no ETag")
			}
			types, err := sys.GetSupportedResetTypes()
			if err != nil || !slices.Contains(types, schemas.OnResetType) || !slices.Contains(types, schemas.ForceOffResetType) {
				t.Fatalf("reset types %v, %v", types, err)
			}
			if n := sys.ProcessorSummary.Count; n == nil || *n != 2 {
				t.Fatalf("processor count %v", n)
			}

			nics, err := sys.EthernetInterfaces()
			if err != nil || len(nics) != 1 {
				t.Fatalf("NICs %v, %v", nics, err)
			}
			if got, _ := normalize(nics[0].MACAddress); got != inv.MAC {
				t.Fatalf("NIC MAC %s, inventory %s", nics[0].MACAddress, inv.MAC)
			}
			storage, err := sys.Storage()
			if err != nil || len(storage) != 1 {
				t.Fatalf("storage %v, %v", storage, err)
			}
			drives, err := storage[0].Drives()
			if err != nil || len(drives) != 1 || drives[0].CapacityBytes == nil || *drives[0].CapacityBytes <= 0 {
				t.Fatalf("drives %v, %v", drives, err)
			}

			if err := sys.SetBoot(&schemas.Boot{
				BootSourceOverrideTarget:  schemas.PxeBootSource,
				BootSourceOverrideEnabled: schemas.OnceBootSourceOverrideEnabled,
				BootSourceOverrideMode:    schemas.UEFIBootSourceOverrideMode,
			}); err != nil {
				t.Fatalf("SetBoot: %v", err)
			}
			if got := l.System(inv.Name).BootOverride(); got != (BootOverride{Target: "Pxe", Enabled: "Once", Mode: "UEFI"}) {
				t.Fatalf("override %+v", got)
			}
			// The object still holds the old ETag: a second SetBoot is a
			// stale If-Match, which the lab must refuse.
			if err := sys.SetBoot(&schemas.Boot{BootSourceOverrideTarget: schemas.HddBootSource}); err == nil {
				t.Fatal("SetBoot with a stale ETag succeeded")
			}

			if _, err := sys.Reset(schemas.OnResetType); err != nil {
				t.Fatalf("Reset On: %v", err)
			}
			sys, err = schemas.GetComputerSystem(c, "/redfish/v1/Systems/"+inv.Name)
			if err != nil {
				t.Fatal(err)
			}
			if sys.PowerState != schemas.OnPowerState || sys.Boot.BootSourceOverrideTarget != "None" {
				t.Fatalf("after Reset On: power %s, override %s", sys.PowerState, sys.Boot.BootSourceOverrideTarget)
			}

			// Reading another machine's system with these credentials fails.
			if _, err := schemas.GetComputerSystem(c, "/redfish/v1/Systems/lab-1"); err == nil {
				t.Fatal("read lab-1 with lab-2's credentials")
			}

			c.Logout()
			if !basic {
				l.sessMu.Lock()
				n := len(l.sessByID)
				l.sessMu.Unlock()
				if n != 0 {
					t.Fatalf("%d sessions left after Logout", n)
				}
			}
		})
	}
}

func TestGofishWrongPassword(t *testing.T) {
	l, srv := newTestLab(t, Config{Machines: 1})
	inv := l.Inventory(srv.URL)[0]
	_, err := gofish.Connect(gofish.ClientConfig{Endpoint: srv.URL, Username: inv.Username, Password: "wrong", HTTPClient: srv.Client()})
	var rfErr *schemas.Error
	if err == nil || !asError(err, &rfErr) || rfErr.HTTPReturnedStatusCode != 401 {
		t.Fatalf("connect with a wrong password: %v", err)
	}
}

func normalize(mac string) (string, error) { return model.NormalizeMAC(mac) }

func asError(err error, target **schemas.Error) bool { return errors.As(err, target) }
