package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/agentd"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"
)

const (
	testToken    = "agent-test-token-0123456789abcdef"
	testPassword = "Agent-BMC-Secret-pw-9876"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type call struct {
	status int
	body   string
}

func do(t *testing.T, c *http.Client, method, url, token string, body any) call {
	t.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return call{res.StatusCode, string(data)}
}

// TestServeProcess runs the built binary: TLS with the generated
// certificate, auth, a machine that survives a restart, and a BMC password
// that appears in no response, no log line and no byte of the store file.
func TestServeProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the agent binary")
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	tokenFile := testenv.TokenFile(t, "# test", testToken)
	apiAddr := testenv.FreeTCP(t).Release()
	spec := testenv.AgentSpec{DataDir: dataDir, TokenFile: tokenFile, Token: testToken, APIAddr: apiAddr,
		Args: []string{"--boot-addr", testenv.FreeTCP(t).Release(), "--tftp-addr", testenv.FreeUDP(t).Release(),
			"--boot-url", "http://10.0.2.2:8081", "--log-level", "debug"}}
	base := "https://" + apiAddr
	var responses []string
	record := func(c call) call { responses = append(responses, c.body); return c }
	expect := func(want int, c call) call {
		t.Helper()
		if c.status != want {
			t.Fatalf("status %d, want %d: %s", c.status, want, c.body)
		}
		return record(c)
	}

	p1 := testenv.StartAgent(t, &testenv.Log{}, spec)
	c := testenv.HTTPSClient(t, p1.CAPEM)
	expect(200, do(t, c, "GET", base+api.PathHealthz, "", nil))
	expect(401, do(t, c, "GET", base+api.PathMachines, "", nil))
	expect(401, do(t, c, "GET", base+api.PathMachines, "wrong-token-0123456789abcdef", nil))
	expect(200, do(t, c, "GET", base+api.PathMachines, testToken, nil))
	info := expect(200, do(t, c, "GET", base+api.PathInfo, testToken, nil))
	version, err := exec.Command(testenv.AgentBinary(t), "version").Output()
	require.NoError(t, err)
	assert.Contains(t, info.body, fmt.Sprintf(`"version": %q`, strings.Fields(string(version))[1]), "the build's version")
	assert.Contains(t, info.body, "http://10.0.2.2:8081")
	req := api.MachineRequest{
		Name:  "m1",
		BMC:   api.BMCRequest{Endpoint: "https://10.0.0.5", Username: "admin", Password: testPassword},
		MACs:  []string{"52:54:00:12:34:56"},
		State: "available",
	}
	expect(201, do(t, c, "POST", base+api.PathMachines, testToken, req))
	expect(400, do(t, c, "POST", base+api.PathMachines, testToken, map[string]any{"name": "m2", "colour": "red"}))
	req.BMC.Password = ""
	req.Version = 1
	req.Params = map[string]string{"k": "v"}
	expect(200, do(t, c, "PUT", base+"/v1/machines/m1", testToken, req))
	expect(409, do(t, c, "PUT", base+"/v1/machines/m1", testToken, req)) // version 1 is stale now
	expect(200, do(t, c, "GET", base+api.PathMetrics, "", nil))

	// A long-poll in flight at SIGTERM is answered, not cut off.
	polled := make(chan call, 1)
	go func() { polled <- do(t, c, "GET", base+"/v1/machines/m1?wait=60s&after_revision=1000", testToken, nil) }()
	waitForMetric(t, c, base, "baremetal_api_long_polls_waiting 1")
	stopStart := time.Now()
	require.NoError(t, p1.Stop(t))
	if d := time.Since(stopStart); d > 15*time.Second {
		t.Errorf("stopping took %s with a long-poll open", d)
	}
	select {
	case pc := <-polled:
		expect(200, pc)
	case <-time.After(10 * time.Second):
		t.Error("the long-poll got no answer at shutdown")
	}
	firstLogs := p1.Log.String()
	for _, want := range []string{"sha256=", "store closed", "agent stopped"} {
		if !strings.Contains(firstLogs, want) {
			t.Errorf("first run's log lacks %q", want)
		}
	}

	p2 := testenv.StartAgent(t, &testenv.Log{}, spec)
	c = testenv.HTTPSClient(t, p2.CAPEM)
	got := expect(200, do(t, c, "GET", base+"/v1/machines/m1", testToken, nil))
	var m api.Machine
	if err := json.Unmarshal([]byte(got.body), &m); err != nil {
		t.Fatal(err)
	}
	if m.Name != "m1" || m.Version != 2 || m.Params["k"] != "v" || m.MACs[0] != "52:54:00:12:34:56" {
		t.Errorf("after restart: %+v", m)
	}
	expect(200, do(t, c, "GET", base+api.PathMachines, testToken, nil))

	// Token rotation: edit the file, SIGHUP, the old token stops working.
	const rotated = "rotated-token-0123456789abcdef"
	if err := os.WriteFile(tokenFile, []byte(rotated+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	require.NoError(t, p2.Cmd.Process.Signal(syscall.SIGHUP))
	testenv.Eventually(t, "the rotated token accepted after SIGHUP", 10*time.Second, func() error {
		if got := do(t, c, "GET", base+api.PathMachines, rotated, nil); got.status != 200 {
			return fmt.Errorf("HTTP %d", got.status)
		}
		return nil
	})
	expect(401, do(t, c, "GET", base+api.PathMachines, testToken, nil))
	require.NoError(t, p2.Stop(t))
	if fp := between(firstLogs, "sha256=", "\n"); fp == "" || !strings.Contains(p2.Log.String(), "reused") || !strings.Contains(p2.Log.String(), fp) {
		t.Errorf("the second start did not reuse the certificate %q", fp)
	}

	logs := firstLogs + p2.Log.String()
	if strings.Contains(logs, testPassword) {
		t.Error("the BMC password appears in the agent's log")
	}
	if strings.Contains(logs, testToken) || strings.Contains(logs, rotated) {
		t.Error("an API token appears in the agent's log")
	}
	for _, r := range responses {
		if strings.Contains(r, testPassword) {
			t.Errorf("the BMC password appears in a response: %s", r)
		}
	}
	db, err := os.ReadFile(filepath.Join(dataDir, agentd.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(db, []byte(testPassword)) {
		t.Error("the BMC password is in the raw store file")
	}
	if !bytes.Contains(db, []byte("10.0.0.5")) {
		t.Error("the store file does not hold the machine at all; the byte search proves nothing")
	}
	for name, want := range map[string]os.FileMode{agentd.SealKeyFile: 0o600, "api-key.pem": 0o600} {
		fi, err := os.Stat(filepath.Join(dataDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %04o, want %04o", name, fi.Mode().Perm(), want)
		}
	}
}

func TestServeRefusesExposedTokenFile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the agent binary")
	}
	tokenFile := testenv.TokenFile(t, testToken)
	require.NoError(t, os.Chmod(tokenFile, 0o644))
	out := &testenv.Log{}
	p := testenv.Start(t, out, testenv.AgentBinary(t), "serve", "--data-dir", filepath.Join(t.TempDir(), "data"),
		"--api-addr", testenv.FreeTCP(t).Release(), "--token-file", tokenFile)
	select {
	case <-p.Done():
		require.False(t, p.Cmd.ProcessState.Success(), "agent started with a world-readable token file")
	case <-time.After(30 * time.Second):
		t.Fatal("agent kept running with a world-readable token file")
	}
	assert.Contains(t, out.String(), "chmod 600")
	assert.NotContains(t, out.String(), testToken)
}

func waitForMetric(t *testing.T, c *http.Client, base, line string) {
	t.Helper()
	testenv.Eventually(t, "metrics showing "+line, 10*time.Second, func() error {
		if !strings.Contains(do(t, c, "GET", base+api.PathMetrics, "", nil).body, line) {
			return errors.New("not there")
		}
		return nil
	})
}

func between(s, start, end string) string {
	_, after, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, end)
	return strings.Fields(v)[0]
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(file, []byte("data-dir: /from/file\napi-addr: 127.0.0.1:9000\nboot-addr: :8081\ntoken-file: /file/tokens\nlog-level: warn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"BAREMETAL_AGENT_CONFIG":             file,
		"BAREMETAL_AGENT_API_ADDR":           "127.0.0.1:9100",
		"BAREMETAL_AGENT_BOOT_ADDR":          "127.0.0.1:9101",
		"BAREMETAL_AGENT_LOG_LEVEL":          "debug",
		"BAREMETAL_AGENT_BOOT_STALL_WARNING": "90s",
	}
	cfg, err := loadConfig([]string{"--boot-addr", "127.0.0.1:9200"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, got, want string }{
		{"flag beats env and file", cfg.BootAddr, "127.0.0.1:9200"},
		{"env beats file", cfg.APIAddr, "127.0.0.1:9100"},
		{"env beats file (level)", cfg.LogLevel.String(), "DEBUG"},
		{"file beats default", cfg.DataDir, "/from/file"},
		{"file only", cfg.TokenFile, "/file/tokens"},
		{"default", cfg.TFTPAddr, ":69"},
		{"default format", fmt.Sprint(cfg.LogJSON), "false"},
		{"env only", cfg.BootStallWarning.String(), "1m30s"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}

	bad := []struct {
		name string
		args []string
		file string
		want string
	}{
		{"unknown file key", nil, "data_dir: /x\n", `unknown key "data_dir"`},
		{"no token file", []string{"--data-dir", "/x"}, "", "--token-file is required"},
		{"bad level", []string{"--token-file", "t", "--log-level", "loud"}, "", "--log-level"},
		{"bad format", []string{"--token-file", "t", "--log-format", "xml"}, "", "--log-format"},
		{"bad addr", []string{"--token-file", "t", "--api-addr", "8443"}, "", "--api-addr"},
		{"cert without key", []string{"--token-file", "t", "--tls-cert", "c.pem"}, "", "go together"},
		{"bad boot stall warning", []string{"--token-file", "t", "--boot-stall-warning", "soon"}, "", "--boot-stall-warning"},
		{"stray argument", []string{"--token-file", "t", "extra"}, "", "no arguments"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{}
			if c.file != "" {
				f := filepath.Join(t.TempDir(), "c.yaml")
				if err := os.WriteFile(f, []byte(c.file), 0o600); err != nil {
					t.Fatal(err)
				}
				env["BAREMETAL_AGENT_CONFIG"] = f
			}
			_, err := loadConfig(c.args, func(k string) string { return env[k] }, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
		})
	}
}

func TestRunMain(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := runMain(context.Background(), []string{"version"}, &out, &errOut); err != nil || !strings.HasPrefix(out.String(), "baremetal-agent ") {
		t.Errorf("version: %v %q", err, out.String())
	}
	if err := runMain(context.Background(), []string{"frobnicate"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "frobnicate") {
		t.Errorf("unknown command: %v", err)
	}
	if err := runMain(context.Background(), nil, &out, &errOut); err == nil {
		t.Error("no command accepted")
	}
}

func TestBootStallWarningFlag(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want time.Duration
	}{
		{"default", nil, 5 * time.Minute},
		{"set", []string{"--boot-stall-warning", "2m"}, 2 * time.Minute},
		{"off", []string{"--boot-stall-warning", "0"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig(append([]string{"--token-file", "t"}, tc.args...), func(string) string { return "" }, io.Discard)
			require.NoError(t, err)
			assert.Equal(t, tc.want, cfg.BootStallWarning)
		})
	}
}
