package reliability

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
)

var tokenRE = regexp.MustCompile(`baremetal\.token=([0-9A-Za-z_-]+)`)

// snapshot is what an attack must leave unchanged: every machine's spec
// version, phase, step, error and addresses, every profile's version, and
// the files of the data, assets and TFTP directories (names and sizes; the
// store file is excluded: a refused callback appends a callback_rejected
// event, which is the point of recording it).
func (s *site) snapshot(ctx context.Context) string {
	s.t.Helper()
	ms, err := s.client.ListMachines(ctx, client.MachineFilter{})
	if err != nil {
		s.t.Fatalf("snapshot: %v", err)
	}
	var lines []string
	for _, m := range ms {
		lines = append(lines, fmt.Sprintf("machine %s v%d %s/%s err=%q addrs=%v", m.Name, m.Version, m.Phase, m.Step, m.LastError, m.Addresses))
	}
	ps, err := s.client.ListBootProfiles(ctx)
	if err != nil {
		s.t.Fatalf("snapshot: %v", err)
	}
	for _, p := range ps {
		lines = append(lines, fmt.Sprintf("profile %s v%d", p.Name, p.Version))
	}
	_ = filepath.WalkDir(s.dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, "agent.db") {
			return nil
		}
		fi, err := d.Info()
		if err == nil {
			lines = append(lines, fmt.Sprintf("file %s %d", strings.TrimPrefix(p, s.dir), fi.Size()))
		}
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestAttackTable runs each attack against the real agent process (API
// over TLS, boot HTTP, TFTP on loopback) and asserts the refusal and that
// nothing changed. Three machines wait for their PXE request (the lab's
// simulated machines do not boot on their own here), so the boot edge
// holds live run tokens to attack.
func TestAttackTable(t *testing.T) {
	s := newSite(t, siteOpts{machines: 3, noLabBoot: true, agentArgs: []string{"--wait-pxe-timeout", "10m"}})
	ctx := context.Background()
	s.profile("attack")
	for i := range 3 {
		if _, err := s.client.CreateMachine(ctx, s.machineRequest(i, "attack", "provisioned")); err != nil {
			t.Fatal(err)
		}
	}
	m1, m2, m3 := s.inventory[0], s.inventory[1], s.inventory[2]
	for _, lm := range []lab.InventoryEntry{m1, m2, m3} {
		awaitT(t, lm.Name+" waiting for PXE", 30*time.Second, func() (bool, string) {
			m, err := s.client.GetMachine(ctx, lm.Name)
			if err != nil {
				return false, err.Error()
			}
			return m.Step == api.StepWaitingPXE, string(m.Phase) + "/" + string(m.Step)
		})
	}
	boot := &http.Client{Timeout: 10 * time.Second}
	get := func(u string) (int, string) {
		res, err := boot.Get(u)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	postCallback := func(name, token string) int {
		body := `{"addresses":["10.9.9.9"],"hostname":"evil","status":"ok"}`
		res, err := boot.Post(s.bootURL+"/machines/"+name+"/callback?token="+token, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("callback: %v", err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	// m2's live token, as anyone on the provisioning network can read it
	// from m2's boot script during its run (see SECURITY.md).
	_, script2 := get(s.bootURL + "/boot/" + m2.MAC)
	tok2 := tokenRE.FindStringSubmatch(script2)
	if tok2 == nil {
		t.Fatalf("m2's script carries no token: %s", script2)
	}
	// m1 boots for real, so its token is spent: the replay target.
	res1, err := lab.SimulatePXEBoot(ctx, boot, s.bootURL, m1.MAC)
	if err != nil || res1.CallbackStatus != http.StatusNoContent {
		t.Fatalf("m1's boot: %v (callback %d)", err, res1.CallbackStatus)
	}
	awaitT(t, m1.Name+" provisioned", 30*time.Second, func() (bool, string) {
		m, err := s.client.GetMachine(ctx, m1.Name)
		return err == nil && m.Phase == api.PhaseProvisioned, fmt.Sprint(m, err)
	})

	apiBase := "https://" + s.apiAddr
	apiHTTP := s.httpsClient()
	apiCall := func(method, path, token string, body io.Reader) int {
		req, _ := http.NewRequest(method, apiBase+path, body)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := apiHTTP.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		io.Copy(io.Discard, res.Body)
		return res.StatusCode
	}
	newMachine := func() io.Reader {
		b, _ := json.Marshal(map[string]any{"name": "intruder", "bmc": map[string]string{"endpoint": "http://192.0.2.1", "username": "a", "password": "b"}})
		return bytes.NewReader(b)
	}
	huge := strings.NewReader(`{"name":"intruder","params":{"p":"` + strings.Repeat("x", api.MaxBodyBytes+1024) + `"}}`)

	tftpGet := func(name string) error {
		c, err := tftp.NewClient(s.tftpAddr)
		if err != nil {
			return err
		}
		c.SetTimeout(2 * time.Second)
		c.SetRetries(1)
		wt, err := c.Receive(name, "octet")
		if err != nil {
			return err
		}
		_, err = wt.WriteTo(io.Discard)
		return err
	}

	cases := []struct {
		name   string
		attack func() error // nil: refused as expected
	}{
		{"tftp path traversal", func() error {
			for _, p := range []string{"../data/seal.key", "../../../../etc/passwd", "%2e%2e/data/agent.db", "..\\data\\seal.key", s.dataDir + "/seal.key"} {
				if err := tftpGet(p); err == nil {
					return fmt.Errorf("TFTP served %q", p)
				}
			}
			return nil
		}},
		{"tftp write request", func() error {
			c, err := tftp.NewClient(s.tftpAddr)
			if err != nil {
				return err
			}
			c.SetTimeout(2 * time.Second)
			c.SetRetries(1)
			rf, err := c.Send("vmlinuz", "octet")
			if err == nil {
				_, err = rf.ReadFrom(strings.NewReader("overwritten"))
			}
			if err == nil {
				return fmt.Errorf("TFTP accepted a write request")
			}
			return nil
		}},
		{"http asset traversal", func() error {
			for _, p := range []string{"/assets/../data/seal.key", "/assets/%2e%2e/data/seal.key", "/assets/..%2fdata%2fagent.db",
				"/assets/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/machines/" + m1.Name + "/assets/..%2f..%2fdata%2fseal.key", "/assets//etc/passwd"} {
				st, body := get(s.bootURL + p)
				if st == http.StatusOK {
					return fmt.Errorf("GET %s: 200 (%d bytes)", p, len(body))
				}
			}
			return nil
		}},
		{"callback with a wrong token", func() error {
			if st := postCallback(m2.Name, strings.Repeat("0", len(tok2[1]))); st != http.StatusForbidden {
				return fmt.Errorf("status %d", st)
			}
			return nil
		}},
		{"callback with another machine's token", func() error {
			// m2's live token on m3 (mid-run too) and on m1 (provisioned).
			for _, target := range []string{m3.Name, m1.Name} {
				if st := postCallback(target, tok2[1]); st != http.StatusForbidden {
					return fmt.Errorf("%s: status %d", target, st)
				}
			}
			return nil
		}},
		{"callback replayed", func() error {
			if st := postCallback(m1.Name, res1.Token); st != http.StatusForbidden {
				return fmt.Errorf("status %d", st)
			}
			return nil
		}},
		{"callback without a token", func() error {
			if st := postCallback(m2.Name, ""); st != http.StatusForbidden {
				return fmt.Errorf("status %d", st)
			}
			return nil
		}},
		{"api without a token", func() error {
			if st := apiCall("POST", "/v1/machines", "", newMachine()); st != http.StatusUnauthorized {
				return fmt.Errorf("status %d", st)
			}
			if st := apiCall("GET", "/v1/machines", "", nil); st != http.StatusUnauthorized {
				return fmt.Errorf("read: status %d", st)
			}
			return nil
		}},
		{"api with a wrong token", func() error {
			if st := apiCall("POST", "/v1/machines", s.token+"x", newMachine()); st != http.StatusUnauthorized {
				return fmt.Errorf("status %d", st)
			}
			return nil
		}},
		{"api read-only token writing", func() error {
			ro := "ro-" + s.token
			if st := apiCall("GET", "/v1/machines", ro, nil); st != http.StatusOK {
				return fmt.Errorf("read-only token cannot read: %d", st)
			}
			for _, w := range []struct{ method, path string }{
				{"POST", "/v1/machines"}, {"PUT", "/v1/machines/" + m2.Name}, {"DELETE", "/v1/machines/" + m2.Name + "?force=true"},
				{"POST", "/v1/machines/" + m2.Name + "/actions/power_off"}, {"DELETE", "/v1/boot_profiles/attack"},
			} {
				if st := apiCall(w.method, w.path, ro, newMachine()); st != http.StatusForbidden {
					return fmt.Errorf("%s %s: status %d", w.method, w.path, st)
				}
			}
			return nil
		}},
		{"api oversized body", func() error {
			if st := apiCall("POST", "/v1/machines", s.token, huge); st != http.StatusRequestEntityTooLarge {
				return fmt.Errorf("status %d", st)
			}
			return nil
		}},
		{"boot callback oversized body", func() error {
			body := `{"addresses":["10.9.9.9"],"log_tail":"` + strings.Repeat("y", 8<<20) + `"}`
			res, err := boot.Post(s.bootURL+"/machines/"+m2.Name+"/callback?token="+tok2[1], "application/json", strings.NewReader(body))
			if err != nil {
				return nil // the server may close the connection mid-upload: refused
			}
			res.Body.Close()
			if res.StatusCode != http.StatusRequestEntityTooLarge && res.StatusCode != http.StatusBadRequest {
				return fmt.Errorf("status %d", res.StatusCode)
			}
			return nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := s.snapshot(ctx)
			if err := tc.attack(); err != nil {
				t.Fatalf("not refused: %v", err)
			}
			if after := s.snapshot(ctx); after != before {
				t.Fatalf("state changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
	// m2's run is still intact after all that: its own token still works.
	if st := postCallback(m2.Name, tok2[1]); st != http.StatusNoContent {
		t.Fatalf("m2's genuine callback after the attacks: %d", st)
	}

	t.Run("slow clients", func(t *testing.T) { slowClients(t, s) })
	t.Run("unknown MAC flood", func(t *testing.T) { unknownMACFlood(t, s) })
}

// slowClients sends request headers a byte at a time, slower than the
// servers' ReadHeaderTimeout (10s in internal/agentd and internal/boot):
// each listener must close the connection instead of waiting forever.
func slowClients(t *testing.T, s *site) {
	var wg sync.WaitGroup
	for _, l := range []struct {
		name, addr string
		tls        bool
	}{{"api", s.apiAddr, true}, {"boot", s.bootAddr, false}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conn net.Conn
			var err error
			if l.tls {
				conn, err = tls.Dial("tcp", l.addr, &tls.Config{InsecureSkipVerify: true}) // only the TCP/TLS behaviour is under test
			} else {
				conn, err = net.Dial("tcp", l.addr)
			}
			if err != nil {
				t.Errorf("%s: %v", l.name, err)
				return
			}
			defer conn.Close()
			start := time.Now()
			req := "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 200) + "\r\n\r\n"
			closedAt := time.Duration(0)
			for i := 0; i < len(req); i++ {
				if _, err := conn.Write([]byte{req[i]}); err != nil {
					closedAt = time.Since(start)
					break
				}
				// Detect the close by reading with a short deadline.
				conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				buf := make([]byte, 512)
				n, rerr := conn.Read(buf)
				if n > 0 && bytes.Contains(buf[:n], []byte(" 200 ")) {
					t.Errorf("%s: a slow client got an answer", l.name)
					return
				}
				if rerr != nil && !isTimeout(rerr) {
					closedAt = time.Since(start)
					break
				}
				if time.Since(start) > 40*time.Second {
					break
				}
			}
			if closedAt == 0 {
				t.Errorf("%s: a client sending headers a byte every 0.5s was still connected after %s", l.name, time.Since(start).Round(time.Second))
				return
			}
			if closedAt > 25*time.Second {
				t.Errorf("%s: slow client closed only after %s", l.name, closedAt)
			}
			t.Logf("%s: slow client cut off after %s", l.name, closedAt.Round(100*time.Millisecond))
		}()
	}
	wg.Wait()
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// unknownMACFlood asks for the boot script of 10,000 MACs nobody
// registered: each gets the unknown-MAC answer, and the agent-wide event
// log stays within its cap.
func unknownMACFlood(t *testing.T, s *site) {
	const n = 10000
	const capEvents = 2000 // store.DefaultMaxAgentEvents
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	var wg sync.WaitGroup
	jobs := make(chan int)
	var mu sync.Mutex
	bad := 0
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				mac := fmt.Sprintf("02:ff:%02x:%02x:%02x:%02x", i>>24&0xff, i>>16&0xff, i>>8&0xff, i&0xff)
				res, err := hc.Get(s.bootURL + "/boot/" + mac)
				if err != nil {
					mu.Lock()
					bad++
					mu.Unlock()
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusTooManyRequests {
					mu.Lock()
					bad++
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if bad > 0 {
		t.Errorf("%d of %d unknown-MAC requests failed or got an unexpected status", bad, n)
	}
	ctx := context.Background()
	total := 0
	var after uint64
	for {
		page, err := s.client.AgentEvents(ctx, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		total += len(page.Events)
		if len(page.Events) == 0 || page.Next <= after {
			break
		}
		after = page.Next
	}
	if total == 0 || total > capEvents {
		t.Fatalf("%d agent-wide events after %d unknown MACs, want 1..%d", total, n, capEvents)
	}
	t.Logf("%d unknown MACs left %d agent-wide events (cap %d)", n, total, capEvents)
	if s.agent.Exited() {
		t.Fatal("the agent died under the flood")
	}
}
