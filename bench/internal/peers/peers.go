// Package peers starts and stops the server processes a benchmark measures
// (the agent and the tools operators run today) and accounts their CPU time,
// children included: tftpd-hpa forks a child per transfer and nginx serves
// from worker processes, so the parent's own counters alone would flatter
// them.
package peers

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a started server process with its own process group.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// Start runs argv with its output in logFile (and the ready line, when
// readyLine is not "", awaited on stdout), in a new process group so Stop
// also ends its workers.
func Start(name string, argv []string, logFile string, readyLine string) (*Proc, error) {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %s not found (run bench/setup.sh): %w", name, argv[0], err)
	}
	lf, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Stderr = lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	var stdout *bufio.Reader
	if readyLine != "" {
		pr, err := cmd.StdoutPipe()
		if err != nil {
			lf.Close()
			return nil, err
		}
		stdout = bufio.NewReader(pr)
	} else {
		cmd.Stdout = lf
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("%s: starting %s: %w", name, strings.Join(argv, " "), err)
	}
	p := &Proc{Name: name, Cmd: cmd, log: logFile, done: make(chan struct{})}
	ready := make(chan error, 1)
	if stdout != nil {
		go func() {
			for {
				line, err := stdout.ReadString('\n')
				if strings.TrimSpace(line) == readyLine {
					ready <- nil
					// Keep draining so the child never blocks on a full pipe.
					for {
						if _, err := stdout.ReadString('\n'); err != nil {
							return
						}
					}
				}
				if err != nil {
					ready <- fmt.Errorf("exited before it was ready")
					return
				}
			}
		}()
	}
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	if stdout != nil {
		select {
		case err := <-ready:
			if err != nil {
				p.Stop()
				return nil, fmt.Errorf("%s: %v; its log %s says: %s", name, err, logFile, p.Tail())
			}
		case <-time.After(30 * time.Second):
			p.Stop()
			return nil, fmt.Errorf("%s: not ready after 30s; log %s", name, logFile)
		}
	}
	return p, nil
}

// Exited reports whether the process has ended (a server that dies
// mid-benchmark must fail the run, not look slow).
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Tail returns the last lines of the process's log.
func (p *Proc) Tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// Stop sends SIGTERM to the process group, then SIGKILL after 10 s.
func (p *Proc) Stop() {
	if p.Exited() {
		return
	}
	pgid := p.Cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM) // a group already gone is what is wanted; <-p.done waits either way
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL) // as above
		<-p.done
	}
}

// CPUMeter measures the CPU time a process tree spends between Start and
// Stop. Children that end are a problem: tftpd-hpa forks one per transfer
// and ignores SIGCHLD, so the kernel discards their times instead of adding
// them to the parent's. The meter therefore samples every live descendant
// every 10 ms and keeps each one's last reading; a child's final <10 ms
// escapes, which the section headers say.
type CPUMeter struct {
	p    *Proc
	base map[int]int64
	last map[int]int64
	stop chan struct{}
	done chan struct{}
	err  error
}

// MeterCPU starts measuring p's process tree.
func (p *Proc) MeterCPU() (*CPUMeter, error) {
	if p.Exited() {
		return nil, fmt.Errorf("%s exited: %v; log: %s", p.Name, p.err, p.Tail())
	}
	m := &CPUMeter{p: p, base: map[int]int64{}, last: map[int]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	if err := treeTicks(p.Cmd.Process.Pid, m.base); err != nil {
		return nil, err
	}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-tick.C:
				if err := treeTicks(p.Cmd.Process.Pid, m.last); err != nil && m.err == nil {
					m.err = err
				}
			}
		}
	}()
	return m, nil
}

// Stop ends the measurement and returns the tree's CPU time since Start.
func (m *CPUMeter) Stop() (time.Duration, error) {
	close(m.stop)
	<-m.done
	if m.p.Exited() {
		return 0, fmt.Errorf("%s exited: %v; log: %s", m.p.Name, m.p.err, m.p.Tail())
	}
	if err := treeTicks(m.p.Cmd.Process.Pid, m.last); err != nil {
		return 0, err
	}
	if m.err != nil {
		return 0, m.err
	}
	var ticks int64
	for pid, t := range m.last {
		ticks += t - m.base[pid]
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

const clockTicks = 100 // USER_HZ, fixed at 100 on Linux for /proc/*/stat

// treeTicks records in into the CPU ticks of root (with its reaped
// children's) and of every live descendant (their own only, since their
// reaped children are theirs to count).
func treeTicks(root int, into map[int]int64) error {
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		t, err := readTicks(pid, pid == root)
		if err != nil {
			if pid == root {
				return err
			}
			continue // ended since its parent listed it
		}
		into[pid] = t
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				queue = append(queue, c)
			}
		}
	}
	return nil
}

func readTicks(pid int, withReaped bool) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// The command name may contain spaces and parentheses: fields start
	// after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime, stime, cutime, cstime are fields 14-17.
	if len(f) < 15 {
		return 0, errors.New("short stat")
	}
	n := 2
	if withReaped {
		n = 4
	}
	var ticks int64
	for _, s := range f[11 : 11+n] {
		v, _ := strconv.ParseInt(s, 10, 64)
		ticks += v
	}
	return ticks, nil
}

// FreePort returns a currently unused loopback port for network ("tcp" or
// "udp").
func FreePort(network string) (int, error) {
	switch network {
	case "tcp":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer ln.Close()
		addr, ok := ln.Addr().(*net.TCPAddr)
		if !ok {
			return 0, fmt.Errorf("free port: TCP listener address is a %T", ln.Addr())
		}
		return addr.Port, nil
	default:
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer pc.Close()
		addr, ok := pc.LocalAddr().(*net.UDPAddr)
		if !ok {
			return 0, fmt.Errorf("free port: UDP socket address is a %T", pc.LocalAddr())
		}
		return addr.Port, nil
	}
}

// PeakRSS returns a process's peak resident set size (VmHWM of
// /proc/<pid>/status) in bytes; read it before the process exits.
func PeakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("pid %d: unexpected VmHWM line %q", pid, line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("pid %d: VmHWM: %w", pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("pid %d: no VmHWM in /proc status", pid)
}

// CPUTime returns the user+system time a process has used so far, its
// reaped children's included.
func CPUTime(pid int) (time.Duration, error) {
	t, err := readTicks(pid, true)
	if err != nil {
		return 0, err
	}
	return time.Duration(t) * time.Second / clockTicks, nil
}

// Descendants returns the pids of every live process below root. A
// process's children are listed per thread that forked them, and a Go
// program (terraform) forks from any of its threads, so every thread's
// list is read.
func Descendants(root int) []int {
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		lists, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
		for _, l := range lists {
			b, err := os.ReadFile(l)
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					out = append(out, c)
					queue = append(queue, c)
				}
			}
		}
	}
	return out
}
