package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/agentd"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

const (
	testToken    = "agent-test-token-0123456789abcdef"
	testPassword = "Agent-BMC-Secret-pw-9876"
)

func buildAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "baremetal-agent")
	cmd := exec.Command("go", "build", "-o", bin, "-ldflags", "-X main.version=test-1.2.3", ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

type agentProc struct {
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan error
}

func startAgent(t *testing.T, bin string, args ...string) *agentProc {
	t.Helper()
	p := &agentProc{out: &lockedBuffer{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(bin, append([]string{"serve"}, args...)...)
	p.cmd.Env = append(os.Environ(), "BAREMETAL_AGENT_LOG_LEVEL=debug")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

func (p *agentProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("agent exited with %v after SIGTERM; output:\n%s", err, p.out)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("agent did not stop within 30s of SIGTERM; output:\n%s", p.out)
	}
}

// client trusts exactly the certificate the agent generated in its data dir.
func trustingClient(t *testing.T, dataDir string) *http.Client {
	t.Helper()
	pemData, err := os.ReadFile(filepath.Join(dataDir, agentd.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		t.Fatal("generated certificate does not parse")
	}
	return &http.Client{Timeout: 90 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func waitHealthy(t *testing.T, p *agentProc, dataDir, addr string) *http.Client {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-p.exited:
			t.Fatalf("agent exited (%v) before becoming healthy; output:\n%s", err, p.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not healthy within 60s; output:\n%s", p.out)
		}
		if _, err := os.Stat(filepath.Join(dataDir, agentd.CertFile)); err == nil {
			c := trustingClient(t, dataDir)
			if res, err := c.Get("https://" + addr + api.PathReadyz); err == nil {
				res.Body.Close()
				if res.StatusCode == 200 {
					return c
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

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
	bin := buildAgent(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	tokenFile := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokenFile, []byte("# test\n"+testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	apiAddr := freePort(t)
	args := []string{"--data-dir", dataDir, "--api-addr", apiAddr, "--boot-addr", freePort(t),
		"--tftp-addr", freePort(t), "--token-file", tokenFile, "--boot-url", "http://10.0.2.2:8081"}
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

	p1 := startAgent(t, bin, args...)
	c := waitHealthy(t, p1, dataDir, apiAddr)
	expect(200, do(t, c, "GET", base+api.PathHealthz, "", nil))
	expect(401, do(t, c, "GET", base+api.PathMachines, "", nil))
	expect(401, do(t, c, "GET", base+api.PathMachines, "wrong-token-0123456789abcdef", nil))
	expect(200, do(t, c, "GET", base+api.PathMachines, testToken, nil))
	info := expect(200, do(t, c, "GET", base+api.PathInfo, testToken, nil))
	if !strings.Contains(info.body, `"version": "test-1.2.3"`) || !strings.Contains(info.body, "http://10.0.2.2:8081") {
		t.Errorf("info %s", info.body)
	}
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
	p1.stop(t)
	if d := time.Since(stopStart); d > 15*time.Second {
		t.Errorf("stopping took %s with a long-poll open", d)
	}
	select {
	case pc := <-polled:
		expect(200, pc)
	case <-time.After(10 * time.Second):
		t.Error("the long-poll got no answer at shutdown")
	}
	firstLogs := p1.out.String()
	for _, want := range []string{"sha256=", "store closed", "agent stopped"} {
		if !strings.Contains(firstLogs, want) {
			t.Errorf("first run's log lacks %q", want)
		}
	}

	p2 := startAgent(t, bin, args...)
	c = waitHealthy(t, p2, dataDir, apiAddr)
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
	if err := p2.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for do(t, c, "GET", base+api.PathMachines, rotated, nil).status != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("the rotated token was not accepted after SIGHUP:\n%s", p2.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	expect(401, do(t, c, "GET", base+api.PathMachines, testToken, nil))
	p2.stop(t)
	if fp := between(firstLogs, "sha256=", "\n"); fp == "" || !strings.Contains(p2.out.String(), "reused") || !strings.Contains(p2.out.String(), fp) {
		t.Errorf("the second start did not reuse the certificate %q", fp)
	}

	logs := firstLogs + p2.out.String()
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
	bin := buildAgent(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokenFile, []byte(testToken+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(tokenFile, 0o644)
	p := startAgent(t, bin, "--data-dir", filepath.Join(dir, "data"), "--api-addr", freePort(t), "--token-file", tokenFile)
	select {
	case err := <-p.exited:
		if err == nil {
			t.Fatal("agent started with a world-readable token file")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("agent kept running with a world-readable token file")
	}
	if out := p.out.String(); !strings.Contains(out, "chmod 600") || strings.Contains(out, testToken) {
		t.Errorf("output: %s", out)
	}
}

func waitForMetric(t *testing.T, c *http.Client, base, line string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(do(t, c, "GET", base+api.PathMetrics, "", nil).body, line) {
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed %q", line)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
				os.WriteFile(f, []byte(c.file), 0o600)
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
