package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/bench/internal/peers"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"
)

type httpServer struct {
	name string
	peer bool
	url  string // the served asset's URL
	proc *peers.Proc
	err  error
}

type httpTrial struct {
	mibps    float64
	p99ms    float64
	requests int
	errors   int
	cpu      time.Duration
}

const initrdName = "initrd-64m.img"

// startHTTPServers starts the agent and nginx serving e.assets; each one's
// url is that of file, which must be size bytes.
func startHTTPServers(e *env, file string, size int64) []*httpServer {
	var servers []*httpServer
	add := func(name string, peer bool, start func() (string, *peers.Proc, error)) {
		u, p, err := start()
		if err != nil {
			logf("%s: not measured: %v", name, err)
		}
		servers = append(servers, &httpServer{name: name, peer: peer, url: u, proc: p, err: err})
	}
	add("agent", false, func() (string, *peers.Proc, error) {
		port, err := peers.FreePort("tcp")
		if err != nil {
			return "", nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		p, err := e.startAgent("agent-http", []string{"-http", addr, "-assets", e.assets})
		if err != nil {
			return "", nil, err
		}
		u := "http://" + addr + "/assets/" + file
		return u, p, awaitHTTP(u, size, p)
	})
	add("nginx", true, func() (string, *peers.Proc, error) {
		port, err := peers.FreePort("tcp")
		if err != nil {
			return "", nil, err
		}
		dir := filepath.Join(e.dir, "nginx")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", nil, err
		}
		conf := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(conf, []byte(nginxConf(dir, e.assets, port)), 0o644); err != nil {
			return "", nil, err
		}
		p, err := peers.Start("nginx", []string{"nginx", "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", conf},
			filepath.Join(e.dir, "nginx.log"), "")
		if err != nil {
			return "", nil, err
		}
		u := fmt.Sprintf("http://127.0.0.1:%d/assets/%s", port, file)
		return u, p, awaitHTTP(u, size, p)
	})
	return servers
}

// nginxConf is nginx tuned as its documentation advises for serving large
// static files: sendfile with tcp_nopush, one worker per CPU, no access log.
func nginxConf(dir, assets string, port int) string {
	return fmt.Sprintf(`daemon off;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    access_log off;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen 127.0.0.1:%[3]d;
        location /assets/ { alias %[2]s/; }
    }
}
`, dir, assets, port)
}

func awaitHTTP(u string, size int64, p *peers.Proc) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	return testenv.Poll(15*time.Second, func() error {
		if p.Exited() {
			return testenv.ErrStop{Err: fmt.Errorf("exited: %s", p.Tail())}
		}
		resp, err := hc.Head(u)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ContentLength != size {
			return fmt.Errorf("HEAD %s: %s, %d bytes", u, resp.Status, resp.ContentLength)
		}
		return nil
	})
}

// runHTTPTrial loads s for d with conns connections, by wrk (one thread
// per connection up to the CPU count) or by the Go client.
func runHTTPTrial(s *httpServer, client string, conns int, d time.Duration) (httpTrial, error) {
	meter, err := s.proc.MeterCPU()
	if err != nil {
		return httpTrial{}, err
	}
	if client == "go" {
		t, err := goLoad(s.url, conns, d)
		cpu, cpuErr := meter.Stop()
		if err != nil {
			return t, err
		}
		t.cpu = cpu
		return t, cpuErr
	}
	threads := min(conns, runtime.NumCPU())
	// --timeout: 64 connections sharing the loopback take seconds per
	// 64 MiB response; wrk's default 2 s would count them as errors.
	out, err := exec.Command("wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", fmt.Sprintf("%ds", int(d.Seconds())), "--timeout", "120s", "--latency", s.url).CombinedOutput()
	cpu, cpuErr := meter.Stop()
	if err != nil {
		return httpTrial{}, fmt.Errorf("wrk: %v: %s", err, out)
	}
	if cpuErr != nil {
		return httpTrial{}, cpuErr
	}
	t, err := parseWrk(string(out))
	if err != nil {
		return httpTrial{}, err
	}
	t.cpu = cpu
	return t, nil
}

var (
	wrkSummary = regexp.MustCompile(`(\d+) requests in ([\d.]+)(us|ms|s|m|h), ([\d.]+)(B|KB|MB|GB|TB) read`)
	wrkP99     = regexp.MustCompile(`(?m)^\s*99(?:\.000)?%\s+([\d.]+)(us|ms|s|m|h)\s*$`)
	wrkSocket  = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

var wrkTimeUnit = map[string]float64{"us": 1e-3, "ms": 1, "s": 1e3, "m": 60e3, "h": 3600e3}
var wrkSizeUnit = map[string]float64{"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}

// parseWrk reads wrk's --latency report: bytes read over the run's
// duration (wrk's sizes are binary units), the 99th percentile latency,
// and every socket error or non-2xx answer as an error.
func parseWrk(out string) (httpTrial, error) {
	m := wrkSummary.FindStringSubmatch(out)
	if m == nil {
		return httpTrial{}, fmt.Errorf("wrk output without a summary line: %q", out)
	}
	var t httpTrial
	t.requests, _ = strconv.Atoi(m[1])
	dur, _ := strconv.ParseFloat(m[2], 64)
	durMs := dur * wrkTimeUnit[m[3]]
	size, _ := strconv.ParseFloat(m[4], 64)
	bytes := size * wrkSizeUnit[m[5]]
	if durMs <= 0 {
		return httpTrial{}, fmt.Errorf("wrk reported a zero duration: %q", m[0])
	}
	t.mibps = bytes / (1 << 20) / (durMs / 1e3)
	p := wrkP99.FindStringSubmatch(out)
	if p == nil {
		return httpTrial{}, fmt.Errorf("wrk output without a 99%% latency line (was --latency given?): %q", out)
	}
	v, _ := strconv.ParseFloat(p[1], 64)
	t.p99ms = v * wrkTimeUnit[p[2]]
	if s := wrkSocket.FindStringSubmatch(out); s != nil {
		for _, n := range s[1:] {
			v, _ := strconv.Atoi(n)
			t.errors += v
		}
	}
	if s := wrkNon2xx.FindStringSubmatch(out); s != nil {
		v, _ := strconv.Atoi(s[1])
		t.errors += v
	}
	if strings.Contains(out, "requests in") && t.requests == 0 {
		return t, fmt.Errorf("wrk completed no request: %q", out)
	}
	return t, nil
}
