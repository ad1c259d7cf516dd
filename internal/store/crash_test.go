package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// crashChildEnv names the data file a re-executed test binary writes to
// until it is killed.
const crashChildEnv = "BAREMETAL_STORE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		os.Exit(3) // crashChild only returns on error; the parent kills it otherwise
	}
	os.Exit(m.Run())
}

// crashChild writes forever, printing a line only after each call returned,
// so every printed line names a committed write.
func crashChild(path string) {
	ctx := context.Background()
	s, err := OpenBolt(path, BoltOptions{Logger: quiet, MaxEventsPerMachine: 1_000_000})
	if err != nil {
		fmt.Println("error", err)
		return
	}
	for i := 0; ; i++ {
		name := fmt.Sprintf("m%d", i)
		m := testMachine(name, fmt.Sprintf("52:54:00:00:%02x:%02x", i/256%256, i%256))
		m.BMC.Password = "pw-" + name
		if _, err := s.CreateMachine(ctx, m); err != nil {
			fmt.Println("error", err)
			return
		}
		fmt.Println("machine", name)
		up, err := s.UpdateMachine(ctx, "m0", func(m *model.Machine) (bool, error) {
			m.Params["last"] = name
			return false, nil
		})
		if err != nil {
			fmt.Println("error", err)
			return
		}
		fmt.Println("revision", up.Revision)
		e, err := s.AppendEvent(ctx, model.Event{Machine: "m0", Type: "x", Message: name})
		if err != nil {
			fmt.Println("error", err)
			return
		}
		fmt.Println("event", e.Seq)
	}
}

func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "agent.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill() // clean-up of a child that may have exited already
			_ = cmd.Wait()
		}
	})

	var machines []string
	var lastRevision, lastSeq uint64
	lines := 0
	deadline := time.Now().Add(30 * time.Second)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "machine":
			machines = append(machines, f[1])
		case "revision":
			lastRevision, _ = strconv.ParseUint(f[1], 10, 64)
		case "event":
			lastSeq, _ = strconv.ParseUint(f[1], 10, 64)
		case "error":
			t.Fatalf("child: %s", sc.Text())
		}
		lines++
		if lines == 30 {
			// While the child holds the file, a second process cannot open it.
			s2, err := OpenBolt(path, BoltOptions{LockTimeout: 100 * time.Millisecond, Logger: quiet})
			if err == nil {
				s2.Close()
				t.Fatal("opened the data file while the child process held it")
			}
			if !strings.Contains(err.Error(), "is locked by another baremetal-agent") {
				t.Fatalf("open while child holds the file: %v", err)
			}
		}
		// Kill mid-stream: the child is already inside its next write.
		if lines >= 150 || time.Now().After(deadline) {
			break
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed = true
	_ = cmd.Wait() // killed: its exit error is expected
	if len(machines) < 10 {
		t.Fatalf("child committed only %d machines before the kill", len(machines))
	}

	s := openTest(t, path, BoltOptions{})
	if err := s.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	}); err != nil {
		t.Fatalf("bbolt consistency check after the crash: %v", err)
	}
	ctx := context.Background()
	for i, name := range machines {
		m, err := s.GetMachine(ctx, name)
		if err != nil {
			t.Fatalf("committed machine %s lost: %v", name, err)
		}
		if m.BMC.Password != "pw-"+name {
			t.Fatalf("machine %s password = %q", name, m.BMC.Password)
		}
		mac := fmt.Sprintf("52:54:00:00:%02x:%02x", i/256%256, i%256)
		if byMAC, err := s.MachineByMAC(ctx, mac); err != nil || byMAC.Name != name {
			t.Fatalf("MAC %s after crash: %v, %v", mac, byMAC, err)
		}
	}
	m0, err := s.GetMachine(ctx, "m0")
	if err != nil {
		t.Fatal(err)
	}
	if m0.Revision < lastRevision {
		t.Fatalf("m0 revision %d, but the child reported %d committed", m0.Revision, lastRevision)
	}
	evs, err := s.ListEvents(ctx, "m0", lastSeq-1, 1)
	if err != nil || len(evs) != 1 || evs[0].Seq != lastSeq {
		t.Fatalf("committed event %d lost: %v, %v", lastSeq, evs, err)
	}
	// The reopened store keeps working on the recovered file.
	next, err := s.AppendEvent(ctx, model.Event{Machine: "m0", Type: "x"})
	if err != nil || next.Seq <= lastSeq {
		t.Fatalf("append after crash: %+v, %v", next, err)
	}
	t.Logf("child committed %d machines, m0 revision %d, event seq %d before SIGKILL", len(machines), lastRevision, lastSeq)
}
