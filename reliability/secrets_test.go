package reliability

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/agentd"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"
)

// TestSecretsNeverLeaveTheAgent drives the real agent with distinctive BMC
// passwords through a create with a wrong password (login refused, the
// machine fails), an update to the right one (it recovers), an update to
// another wrong one and back, and then searches everything the agent
// produced for each password: its log (debug level), the raw bbolt file,
// the events API, /metrics and every API response body. The TF_LOG=trace
// side is provider.TestAccMachineSecretsNotLogged (plain and write-only
// passwords through the terraform CLI).
func TestSecretsNeverLeaveTheAgent(t *testing.T) {
	s := newSite(t, siteOpts{machines: 1, agentArgs: []string{"--log-level", "debug", "--step-retries", "1", "--bmc-request-timeout", "3s"}})
	lm := s.inventory[0]
	wrong1 := "Wrong-BMC-pw-" + testenv.RandomHex(8)
	wrong2 := "Rotated-BMC-pw-" + testenv.RandomHex(8)
	secrets := map[string]string{"first wrong password": wrong1, "second wrong password": wrong2, "lab password": lm.Password, "api token": s.token}

	hc := s.httpsClient()
	var bodies []string
	call := func(method, path string, body any) (int, string) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, "https://"+s.apiAddr+path, rd)
		req.Header.Set("Authorization", "Bearer "+s.token)
		req.Header.Set("Content-Type", "application/json")
		res, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		bodies = append(bodies, fmt.Sprintf("%s %s -> %d %s", method, path, res.StatusCode, b))
		return res.StatusCode, string(b)
	}
	machine := func() api.Machine {
		t.Helper()
		_, b := call("GET", "/v1/machines/"+lm.Name, nil)
		var m api.Machine
		if err := json.Unmarshal([]byte(b), &m); err != nil {
			t.Fatalf("machine: %v: %s", err, b)
		}
		return m
	}
	await := func(what string, cond func(api.Machine) bool) api.Machine {
		t.Helper()
		var m api.Machine
		awaitT(t, what, 60*time.Second, func() (bool, string) {
			m = machine()
			return cond(m), fmt.Sprintf("%s/%s %q", m.Phase, m.Step, m.LastError)
		})
		return m
	}
	req := api.MachineRequest{Name: lm.Name, State: "available",
		BMC: api.BMCRequest{Endpoint: lm.Endpoint, Username: lm.Username, Password: wrong1}}
	if st, b := call("POST", "/v1/machines", req); st != http.StatusCreated {
		t.Fatalf("create: %d %s", st, b)
	}
	m := await("login refused with the wrong password", func(m api.Machine) bool { return m.Phase == api.PhaseFailed })
	if !strings.Contains(m.LastError, "401") {
		t.Errorf("last_error %q does not say the login was refused", m.LastError)
	}

	setPassword := func(pw string, note string) {
		t.Helper()
		cur := machine()
		r := req
		r.BMC.Password, r.Version, r.Params = pw, cur.Version, map[string]string{"note": note}
		if st, b := call("PUT", "/v1/machines/"+lm.Name, r); st != http.StatusOK {
			t.Fatalf("update: %d %s", st, b)
		}
	}
	setPassword(lm.Password, "right")
	await("recovery with the right password", func(m api.Machine) bool { return m.Phase == api.PhaseAvailable && m.LastError == "" })
	setPassword(wrong2, "rotated-wrong")
	// The new password is only used at the next BMC call: an operator
	// action, whose failure goes back to the caller.
	if st, b := call("POST", "/v1/machines/"+lm.Name+"/actions/power_on", nil); st != http.StatusBadGateway || !strings.Contains(b, "401") {
		t.Errorf("power_on with the rotated wrong password: %d %s", st, b)
	}
	setPassword(lm.Password, "right-again")
	if st, b := call("POST", "/v1/machines/"+lm.Name+"/actions/power_on", nil); st >= 300 {
		t.Errorf("power_on with the right password: %d %s", st, b)
	}

	call("GET", "/v1/machines", nil)
	_, events := call("GET", "/v1/machines/"+lm.Name+"/events?limit=1000", nil)
	call("GET", "/v1/events?limit=1000", nil)
	call("GET", "/v1/info", nil)
	call("GET", "/metrics", nil)
	if !strings.Contains(events, "401") {
		t.Errorf("the events do not record the refused login, so the search proves little: %.500s", events)
	}
	s.stop()

	db, err := os.ReadFile(filepath.Join(s.dataDir, "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(db, []byte(lm.Endpoint)) {
		t.Fatal("the store file does not hold the machine; searching it proves nothing")
	}
	logs := s.agentLog.String()
	if !strings.Contains(logs, "level=DEBUG") {
		t.Fatal("the agent log has no debug lines; searching it proves less than it should")
	}
	places := map[string]string{"agent log": logs, "store file": string(db), "api responses (events, metrics included)": strings.Join(bodies, "\n")}
	for what, secret := range secrets {
		for where, text := range places {
			if strings.Contains(text, secret) {
				t.Errorf("the %s appears in the %s", what, where)
			}
		}
	}
}

// TestAgentRefusesExposedSecretFiles: the real agent will not start with a
// token file, a seal key or a --tls-key that group or others can read. (A
// generated self-signed key found exposed is replaced with a new 0600 one
// and a warning instead: internal/agentd/tls.go.)
func TestAgentRefusesExposedSecretFiles(t *testing.T) {
	for _, tc := range []struct {
		name string
		file func(s *site) string
		want string
	}{
		{"token file", func(s *site) string { return s.tokenFile }, "chmod 600"},
		{"seal key", func(s *site) string { return filepath.Join(s.dataDir, "seal.key") }, "chmod 600"},
		{"--tls-key", func(s *site) string {
			// The generated pair, now configured as the operator's own.
			cert, key := filepath.Join(s.dir, "tls.pem"), filepath.Join(s.dir, "tls-key.pem")
			for src, dst := range map[string]string{agentd.CertFile: cert, "api-key.pem": key} {
				b, err := os.ReadFile(filepath.Join(s.dataDir, src))
				if err != nil || os.WriteFile(dst, b, 0o600) != nil {
					s.t.Fatalf("copying %s: %v", src, err)
				}
			}
			s.agentArgs = append(s.agentArgs, "--tls-cert", cert, "--tls-key", key)
			return key
		}, "chmod 600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSite(t, siteOpts{})
			s.stop()
			path := tc.file(s)
			if err := os.Chmod(path, 0o644); err != nil {
				t.Fatal(err)
			}
			out := &testenv.Log{}
			p := testenv.Start(t, out, append([]string{s.bin}, s.agentArgs...)...)
			select {
			case <-p.Done():
			case <-time.After(30 * time.Second):
				t.Fatalf("the agent kept running with %s mode 0644: %s", path, out)
			}
			if p.Cmd.ProcessState.Success() {
				t.Fatalf("the agent exited 0 with %s mode 0644", path)
			}
			if !strings.Contains(out.String(), tc.want) || !strings.Contains(out.String(), filepath.Base(path)) {
				t.Errorf("the refusal does not name the file and the fix: %s", out)
			}
			if strings.Contains(out.String(), s.token) {
				t.Error("the refusal prints the token")
			}
		})
	}
}
