package lab

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the command's goroutine and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestRunCommandAcceptance is issue 4's acceptance: the lab command serves
// both systems, a Reset On with the inventory's credentials powers one on,
// and wrong credentials get 401.
func TestRunCommandAcceptance(t *testing.T) {
	inventory := filepath.Join(t.TempDir(), "inventory.json")
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- RunCommand(ctx, []string{"--machines", "2", "--backend", "memory", "--listen", "127.0.0.1:0", "--inventory", inventory}, &stdout, &stderr)
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("RunCommand: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("RunCommand did not return after cancel")
		}
	}()

	eventually(t, 10*time.Second, "the ready line", func() bool { return strings.Contains(stdout.String(), "lab: serving") })
	if !strings.Contains(stdout.String(), "lab: serving 2 machines (memory, firmware uefi) on http://127.0.0.1:") || !strings.Contains(stdout.String(), "inventory "+inventory) {
		t.Fatalf("ready line %q", stdout.String())
	}
	st, err := os.Stat(inventory)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("inventory mode %v, want 0600", st.Mode().Perm())
	}
	inv, err := ReadInventory(inventory)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Machines) != 2 {
		t.Fatalf("inventory %+v", inv)
	}
	raw, _ := os.ReadFile(inventory)
	for _, key := range []string{`"name"`, `"endpoint"`, `"username"`, `"password"`, `"mac"`} {
		if !bytes.Contains(raw, []byte(key)) {
			t.Fatalf("inventory lacks %s: %s", key, raw)
		}
	}
	m := inv.Machines[1]
	base, _, _ := strings.Cut(m.Endpoint, "/redfish/")

	do := func(method, url, user, pass, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&doc)
		return resp.StatusCode, doc
	}

	if code, doc := do("GET", base+"/redfish/v1/", "", "", ""); code != 200 || doc["Systems"] == nil {
		t.Fatalf("service root: %d %v", code, doc)
	}
	code, doc := do("GET", base+"/redfish/v1/Systems", m.Username, m.Password, "")
	if code != 200 || doc["Members@odata.count"] != float64(2) {
		t.Fatalf("systems: %d %v", code, doc)
	}
	if code, _ := do("POST", m.Endpoint+"/Actions/ComputerSystem.Reset", m.Username, m.Password, `{"ResetType":"On"}`); code != 204 {
		t.Fatalf("Reset On: %d", code)
	}
	if code, doc := do("GET", m.Endpoint, m.Username, m.Password, ""); code != 200 || doc["PowerState"] != "On" {
		t.Fatalf("after Reset On: %d PowerState %v", code, doc["PowerState"])
	}
	if code, doc := do("GET", inv.Machines[0].Endpoint, m.Username, m.Password, ""); code != 401 || doc["error"] == nil {
		t.Fatalf("another machine's credentials: %d %v", code, doc)
	}
	if code, _ := do("POST", m.Endpoint+"/Actions/ComputerSystem.Reset", m.Username, "wrong", `{"ResetType":"ForceOff"}`); code != 401 {
		t.Fatalf("wrong password: %d", code)
	}
	if code, doc := do("GET", m.Endpoint, m.Username, m.Password, ""); code != 200 || doc["PowerState"] != "On" {
		t.Fatalf("a refused ForceOff changed the power: %v", doc["PowerState"])
	}
	if strings.Contains(stderr.String(), m.Password) {
		t.Fatal("the lab logged a password")
	}
}

func TestRunCommandRejectsBadFlags(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"--machines", "0", "--inventory", filepath.Join(dir, "a.json")},
		{"--backend", "vmware", "--inventory", filepath.Join(dir, "b.json")},
		{"--listen", "256.0.0.1:1", "--inventory", filepath.Join(dir, "c.json")},
		{"--log-level", "loud"},
		{"--latency", "-1s", "--inventory", filepath.Join(dir, "d.json")},
		{"--disk-mib", "0", "--inventory", filepath.Join(dir, "e.json")},
		{"stray"},
		{"--no-such-flag"},
	} {
		var out, errOut bytes.Buffer
		if err := RunCommand(context.Background(), args, &out, &errOut); err == nil {
			t.Errorf("RunCommand(%q) succeeded", args)
		}
	}
	var out, errOut bytes.Buffer
	if err := RunCommand(context.Background(), []string{"-h"}, &out, &errOut); err != nil || !strings.Contains(errOut.String(), "boot-url") {
		t.Errorf("-h: %v, %q", err, errOut.String())
	}
}

func TestWriteInventoryIsAtomicAndPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inv.json")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := InventoryFile{Machines: []InventoryEntry{{Name: "lab-1", Endpoint: "http://x/redfish/v1/Systems/lab-1", Username: "u", Password: "p", MAC: "52:54:00:00:00:01"}}}
	if err := WriteInventory(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadInventory(path)
	if err != nil || len(got.Machines) != 1 || got.Machines[0] != want.Machines[0] {
		t.Fatalf("%+v, %v", got, err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
}

func TestRunCommandServesHTTPSWithThePinnedCA(t *testing.T) {
	inventory := filepath.Join(t.TempDir(), "inventory.json")
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- RunCommand(ctx, []string{"--machines", "1", "--listen", "127.0.0.1:0", "--tls", "--inventory", inventory}, &stdout, &stderr)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunCommand: %v", err)
		}
	}()
	eventually(t, 10*time.Second, "the ready line", func() bool { return strings.Contains(stdout.String(), "lab: serving") })
	inv, err := ReadInventory(inventory)
	if err != nil {
		t.Fatal(err)
	}
	m := inv.Machines[0]
	if !strings.HasPrefix(m.Endpoint, "https://127.0.0.1:") || !strings.Contains(m.CACertPEM, "BEGIN CERTIFICATE") {
		t.Fatalf("entry %+v", m)
	}

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(m.CACertPEM)) {
		t.Fatal("the inventory's CA does not parse")
	}
	pinned := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("GET", m.Endpoint, nil)
	req.SetBasicAuth(m.Username, m.Password)
	resp, err := pinned.Do(req)
	if err != nil {
		t.Fatalf("with the pinned CA: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// Without it, verification fails, as with any self-signed BMC.
	unpinned := &http.Client{Transport: &http.Transport{}}
	if resp, err := unpinned.Get(m.Endpoint); err == nil {
		resp.Body.Close()
		t.Fatal("a client without the CA trusted the lab")
	}
}

// TestRunCommandLatencySlowsEveryMachine checks --latency reaches every
// emulated BMC: a benchmark of slow BMCs would otherwise measure fast ones.
func TestRunCommandLatencySlowsEveryMachine(t *testing.T) {
	const latency = 150 * time.Millisecond
	inventory := filepath.Join(t.TempDir(), "inventory.json")
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- RunCommand(ctx, []string{"--machines", "3", "--listen", "127.0.0.1:0", "--inventory", inventory, "--latency", latency.String()}, &stdout, &stderr)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunCommand: %v", err)
		}
	}()
	eventually(t, 10*time.Second, "the ready line", func() bool { return strings.Contains(stdout.String(), "lab: serving") })
	inv, err := ReadInventory(inventory)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range inv.Machines {
		req, err := http.NewRequest(http.MethodGet, m.Endpoint, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(m.Username, m.Password)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if took := time.Since(start); resp.StatusCode != http.StatusOK || took < latency {
			t.Errorf("%s: HTTP %d after %s, want 200 after at least %s", m.Name, resp.StatusCode, took, latency)
		}
	}
}
