package peers

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"
)

// A server whose CPU is spent in a short-lived child that it never waits
// for (as tftpd-hpa's per-transfer children): the meter must still see it,
// and Stop must end the whole process group.
func TestStartMeterStop(t *testing.T) {
	dir := t.TempDir()
	done := filepath.Join(dir, "done")
	script := `trap '' CHLD
echo ready
( i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; touch ` + done + ` ) &
exec sleep 600`
	p, err := Start("busy", []string{"sh", "-c", script}, filepath.Join(dir, "log"), "ready")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	m, err := p.MeterCPU()
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the child's done file", time.Minute, func() error { _, err := os.Stat(done); return err })
	cpu, err := m.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if cpu <= 0 {
		t.Fatalf("the busy child's CPU time was not seen: %v", cpu)
	}
	p.Stop()
	if !p.Exited() {
		t.Fatal("still running after Stop")
	}
	if _, err := p.MeterCPU(); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("MeterCPU on a stopped process: %v", err)
	}
}

func TestStartReportsAnEarlyExit(t *testing.T) {
	dir := t.TempDir()
	_, err := Start("broken", []string{"sh", "-c", "echo 'bad config line 3' >&2; exit 1"}, filepath.Join(dir, "log"), "ready")
	if err == nil || !strings.Contains(err.Error(), "bad config line 3") {
		t.Fatalf("err = %v, want the log's last words", err)
	}
	if _, err := Start("missing", []string{"no-such-binary-here"}, filepath.Join(dir, "log2"), ""); err == nil || !strings.Contains(err.Error(), "bench/setup.sh") {
		t.Fatalf("err = %v", err)
	}
}

// A process that burned CPU shows it in CPUTime, has a peak RSS, and is
// listed among the test's descendants; a missing process is an error.
func TestPeakRSSCPUTimeDescendants(t *testing.T) {
	dir := t.TempDir()
	done := filepath.Join(dir, "done")
	script := `echo ready
i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done
touch ` + done + `
exec sleep 600`
	p, err := Start("mem", []string{"sh", "-c", script}, filepath.Join(dir, "log"), "ready")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	testenv.Eventually(t, "the child's done file", time.Minute, func() error { _, err := os.Stat(done); return err })
	pid := p.Cmd.Process.Pid
	cpu, err := CPUTime(pid)
	if err != nil || cpu <= 0 {
		t.Fatalf("CPUTime = %v, %v; want > 0", cpu, err)
	}
	rss, err := PeakRSS(pid)
	if err != nil || rss <= 0 {
		t.Fatalf("PeakRSS = %d, %v", rss, err)
	}
	self, err := PeakRSS(os.Getpid())
	if err != nil || self < 1<<20 {
		t.Fatalf("own PeakRSS = %d, %v", self, err)
	}
	if _, err := PeakRSS(1 << 30); err == nil {
		t.Fatal("PeakRSS of no process succeeded")
	}
	if d := Descendants(os.Getpid()); !slices.Contains(d, pid) {
		t.Fatalf("Descendants(test) = %v, want %d among them", d, pid)
	}
}
