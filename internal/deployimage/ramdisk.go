package deployimage

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// The wire types of the ramdisk's protocol, as the agent reads them.
type DiskReport struct {
	Name       string `json:"name"`
	SizeBytes  int64  `json:"size_bytes"`
	Model      string `json:"model"`
	Serial     string `json:"serial"`
	WWN        string `json:"wwn"`
	Rotational *bool  `json:"rotational"`
}

type ProgressReport struct {
	BytesWritten int64 `json:"bytes_written"`
	ElapsedMS    int64 `json:"elapsed_ms"`
}

type CallbackReport struct {
	Status       string   `json:"status"`
	Stage        string   `json:"stage"`
	Message      string   `json:"message"`
	Addresses    []string `json:"addresses"`
	Hostname     string   `json:"hostname"`
	LogTail      string   `json:"log_tail"`
	Disk         string   `json:"disk"`
	BytesWritten int64    `json:"bytes_written"`
	DurationMS   int64    `json:"duration_ms"`
}

// Config drive contents the fake agent serves under /config/.
const (
	UserData      = "#cloud-config\nhostname: deploy-1\nruncmd:\n  - echo deployed\n"
	MetaData      = "instance-id: deploy-1-run-7\nlocal-hostname: deploy-1\n"
	NetworkConfig = "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n"
)

// FakeAgent is the agent's side of the ramdisk protocol, on 127.0.0.1,
// recording everything the ramdisk sends. The tests and the deploy
// benchmark (bench/cmd/bootbench -only deploy) boot the real ramdisk
// against it.
type FakeAgent struct {
	Machine  string
	Token    string
	Port     int
	GuestURL string // the agent as the VM reaches it, through the guest forward

	mux *http.ServeMux
	srv *http.Server

	mu        sync.Mutex
	plan      map[string]any
	disks     [][]DiskReport
	progress  []ProgressReport
	callbacks []CallbackReport
	gets      []string
	refusal   string // when set, the disks report is answered 409 with it
	notReady  int    // disks reports still to answer 503
}

// NewFakeAgent listens on a free loopback port for machine's ramdisk.
func NewFakeAgent(machine string) (*FakeAgent, error) {
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	a := &FakeAgent{Machine: machine, Token: hex.EncodeToString(tok), mux: http.NewServeMux()}
	a.mux.HandleFunc("POST /machines/{name}/deploy/disks", a.authed(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Disks []DiskReport `json:"disks"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad disks report: "+err.Error(), http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.disks = append(a.disks, req.Disks)
		plan, refusal, notReady := a.plan, a.refusal, a.notReady > 0
		if notReady {
			a.notReady--
		}
		a.mu.Unlock()
		if notReady {
			http.Error(w, "converting the qcow2 image to raw; ask again", http.StatusServiceUnavailable)
			return
		}
		if refusal != "" {
			http.Error(w, refusal, http.StatusConflict)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(plan)
	}))
	a.mux.HandleFunc("POST /machines/{name}/deploy/progress", a.authed(func(w http.ResponseWriter, r *http.Request) {
		var p ProgressReport
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.progress = append(a.progress, p)
		a.mu.Unlock()
	}))
	a.mux.HandleFunc("POST /machines/{name}/callback", a.authed(func(w http.ResponseWriter, r *http.Request) {
		var c CallbackReport
		if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.callbacks = append(a.callbacks, c)
		a.mu.Unlock()
	}))
	for name, body := range map[string]string{"user-data": UserData, "meta-data": MetaData, "network-config": NetworkConfig} {
		a.mux.HandleFunc("GET /config/"+name, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, body)
		})
	}
	a.mux.HandleFunc("GET /images/", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.gets = append(a.gets, r.URL.Path)
		a.mu.Unlock()
		http.NotFound(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		_ = ln.Close()
		return nil, fmt.Errorf("listener address %v is not TCP", ln.Addr())
	}
	a.Port = addr.Port
	a.srv = &http.Server{Handler: a.mux, ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = a.srv.Serve(ln) }()
	a.GuestURL = fmt.Sprintf("http://10.0.2.4:%d", a.Port)
	return a, nil
}

// Close stops the listener and every connection.
func (a *FakeAgent) Close() { _ = a.srv.Close() }

func (a *FakeAgent) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") != a.Machine || r.URL.Query().Get("token") != a.Token {
			http.Error(w, "wrong machine or token", http.StatusForbidden)
			return
		}
		h(w, r)
	}
}

// Reset forgets what the ramdisk sent, for its next boot.
func (a *FakeAgent) Reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.disks, a.progress, a.callbacks, a.gets = nil, nil, nil, nil
}

// SetPlan sets the answer to the disks report.
func (a *FakeAgent) SetPlan(p map[string]any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.plan = p
}

// Refuse answers the disks report 409 with why ("" to stop refusing).
func (a *FakeAgent) Refuse(why string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refusal = why
}

// NotReady answers the next n disks reports 503 (still converting).
func (a *FakeAgent) NotReady(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.notReady = n
}

// Serve publishes body at path; throttled, at about 3 MiB/s.
func (a *FakeAgent) Serve(path string, body []byte, throttle bool) {
	a.mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.gets = append(a.gets, r.URL.Path)
		a.mu.Unlock()
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		if !throttle {
			_, _ = w.Write(body)
			return
		}
		rc := http.NewResponseController(w)
		tick := time.NewTicker(80 * time.Millisecond)
		defer tick.Stop()
		for off := 0; off < len(body); off += 256 * 1024 {
			if _, err := w.Write(body[off:min(off+256*1024, len(body))]); err != nil {
				return
			}
			_ = rc.Flush()
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			}
		}
	})
}

// ImageGets are the paths of the image requests so far.
func (a *FakeAgent) ImageGets() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.gets...)
}

// Disks are the disks reports so far.
func (a *FakeAgent) Disks() [][]DiskReport {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([][]DiskReport(nil), a.disks...)
}

// Progress is the progress reports so far.
func (a *FakeAgent) Progress() []ProgressReport {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]ProgressReport(nil), a.progress...)
}

// Callbacks are the callbacks so far.
func (a *FakeAgent) Callbacks() []CallbackReport {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]CallbackReport(nil), a.callbacks...)
}

// VM is one boot of the ramdisk in QEMU (TCG) against a FakeAgent, on an
// isolated user network whose only way out is a guest forward to the agent.
type VM struct {
	KernelDir  string   // holds vmlinuz and initrd.img (make deploy-image)
	Forward    []string // the command QEMU runs per guest connection; the agent's HOST:PORT is appended (e.g. baremetal-agent lab-forward)
	DiskPath   string
	DiskFormat string // raw (default) or qcow2
	DiskSerial string
	Mode       string // deploy or clean
	ExtraArgs  string // more kernel arguments
	MemoryMiB  int    // default 256
	CPUs       int    // default 1
}

// Boot runs the ramdisk until it says it has stopped (after its final sync)
// or ctx ends, then stops QEMU. It returns the serial console, the time from
// QEMU's start and whether the ramdisk stopped; err is for QEMU not starting.
func (v VM) Boot(ctx context.Context, a *FakeAgent) (console string, elapsed time.Duration, finished bool, err error) {
	if len(v.Forward) == 0 {
		return "", 0, false, errors.New("deployimage: VM.Forward is empty")
	}
	format := v.DiskFormat
	if format == "" {
		format = "raw"
	}
	mem, cpus := v.MemoryMiB, v.CPUs
	if mem == 0 {
		mem = 256
	}
	if cpus == 0 {
		cpus = 1
	}
	fwd := strings.Join(append(append([]string(nil), v.Forward...), fmt.Sprintf("127.0.0.1:%d", a.Port)), " ")
	blk := "virtio-blk-pci,drive=d0"
	if v.DiskSerial != "" {
		blk += ",serial=" + v.DiskSerial
	}
	cmdline := fmt.Sprintf("console=ttyS0 quiet baremetal.url=%s baremetal.machine=%s baremetal.token=%s baremetal.mode=%s",
		a.GuestURL, a.Machine, a.Token, v.Mode)
	if v.ExtraArgs != "" {
		cmdline += " " + v.ExtraArgs
	}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-accel", "tcg", "-m", fmt.Sprint(mem), "-smp", fmt.Sprint(cpus), "-nodefaults", "-display", "none", "-no-reboot",
		"-serial", "stdio",
		"-kernel", filepath.Join(v.KernelDir, "vmlinuz"), "-initrd", filepath.Join(v.KernelDir, "initrd.img"),
		"-append", cmdline,
		// QEMU options split at commas; a doubled one is literal.
		"-drive", "file="+strings.ReplaceAll(v.DiskPath, ",", ",,")+",format="+format+",if=none,id=d0",
		"-device", blk,
		// restrict=on: the VM reaches nothing but the fake agent, through
		// the one guest forward.
		"-netdev", fmt.Sprintf("user,id=n0,restrict=on,guestfwd=tcp:10.0.2.4:%d-cmd:%s", a.Port, strings.ReplaceAll(fwd, ",", ",,")),
		"-device", "virtio-net-pci,netdev=n0,romfile=",
	)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", 0, false, err
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return "", 0, false, err
	}
	var b strings.Builder
	stopped := make(chan struct{})
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stdout)
		once := sync.Once{}
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			b.WriteString(line + "\n")
			if strings.HasPrefix(line, "deploy: stopped") {
				once.Do(func() { close(stopped) })
			}
		}
	}()
	// QEMU ending early (a bad option, a crash) ends the wait too.
	select {
	case <-stopped:
		finished = true
	case <-scanned:
	case <-ctx.Done():
	}
	elapsed = time.Since(start)
	_ = cmd.Process.Kill()
	<-scanned
	_ = cmd.Wait()
	return b.String(), elapsed, finished, nil
}
