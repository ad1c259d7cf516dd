package tftpload

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/boot"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

type nopLifecycle struct{}

func (nopLifecycle) Signal(context.Context, string, model.Signal, map[string]string) {}
func (nopLifecycle) Callback(context.Context, string, string, model.CallbackReport) error {
	return model.ErrTokenRejected
}
func (nopLifecycle) DeployDisks(context.Context, string, string, []model.SeenDisk) (model.DeployTarget, error) {
	return model.DeployTarget{}, model.ErrTokenRejected
}
func (nopLifecycle) DeployProgress(context.Context, string, string, int64, time.Duration) error {
	return model.ErrTokenRejected
}

// agentTFTP serves dir with the agent's real TFTP edge on a loopback port.
func agentTFTP(t *testing.T, dir string, anticipate uint, timeout time.Duration) string {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv, err := boot.New(boot.Config{TFTPRoot: dir, BootURL: "http://127.0.0.1:1", TFTPAnticipate: anticipate, TFTPTimeout: timeout,
		Logger: slog.New(slog.DiscardHandler)}, st, boot.StoreSecrets(st), nopLifecycle{})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeTFTP(ctx, pc) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeTFTP: %v", err)
		}
	})
	return pc.LocalAddr().String()
}

func TestGet(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	file := make([]byte, 3*1468+100) // several full blocks and a short one at either size
	for i := range file {
		file[i] = byte(rng.Uint32())
	}
	exact := file[:4*512] // a multiple of 512: ends with an empty block
	if err := os.WriteFile(filepath.Join(dir, "f.bin"), file, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "exact.bin"), exact, 0o644); err != nil {
		t.Fatal(err)
	}
	lockstep := agentTFTP(t, dir, 0, 0)
	window := agentTFTP(t, dir, 4, 0)
	corrupt := append([]byte(nil), file...)
	corrupt[2000] ^= 1
	tests := []struct {
		name    string
		addr    string
		file    string
		want    []byte
		blksize int
		wantErr string
	}{
		{"plain 512", lockstep, "f.bin", file, 0, ""},
		{"blksize 1468", lockstep, "f.bin", file, 1468, ""},
		{"multiple of the block size", lockstep, "exact.bin", exact, 512, ""},
		{"sender window", window, "f.bin", file, 1468, ""},
		{"sender window at 512", window, "f.bin", file, 0, ""},
		{"wrong bytes are caught", lockstep, "f.bin", corrupt, 1468, "wrong data in block 2"},
		{"short file is caught", lockstep, "exact.bin", file, 0, "got 2048 bytes"},
		{"server error is reported", lockstep, "missing.bin", file, 1468, "server error 1: file not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Get(tt.addr, tt.file, tt.want, Options{BlockSize: tt.blksize, Timeout: time.Second, Retries: 3})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Bytes != int64(len(tt.want)) || r.Duration <= 0 {
				t.Fatalf("result %+v, want %d bytes", r, len(tt.want))
			}
		})
	}
}

// TestGetLoss checks the simulated lossy link: packets are dropped and the
// lock-step server recovers from every drop. The client waits longer than
// the server's timeout plus pin/tftp's random back-off (up to 1 s).
func TestGetLoss(t *testing.T) {
	dir := t.TempDir()
	file := make([]byte, 30*512+7)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range file {
		file[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(filepath.Join(dir, "f.bin"), file, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := agentTFTP(t, dir, 0, 100*time.Millisecond)
	tests := []struct {
		name    string
		loss    float64
		blksize int
	}{
		{"no loss", 0, 0},
		{"plain 512", 0.05, 0},
		{"blksize 1468", 0.1, 1468},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Get(addr, "f.bin", file, Options{BlockSize: tt.blksize, Timeout: 300 * time.Millisecond, Retries: 10, Loss: tt.loss, Seed: 7})
			if err != nil {
				t.Fatal(err)
			}
			if r.Bytes != int64(len(file)) {
				t.Fatalf("got %d bytes, want %d", r.Bytes, len(file))
			}
			if (tt.loss > 0) != (r.Dropped > 0) || (r.Dropped > 0 && r.Resends == 0) {
				t.Fatalf("loss %.2f: dropped %d, resent %d", tt.loss, r.Dropped, r.Resends)
			}
		})
	}
}

// TestLost checks that drops are a function of the packet's identity and
// the seed, and that their rate is the one asked for.
func TestLost(t *testing.T) {
	for _, loss := range []float64{0, 0.01, 0.05, 0.5} {
		const n = 200000
		drops := 0
		for i := range n {
			d := lost(42, opDATA, int64(i/3)*1468, i%3+1, loss)
			if d != lost(42, opDATA, int64(i/3)*1468, i%3+1, loss) {
				t.Fatal("same packet, different fate")
			}
			if d {
				drops++
			}
		}
		if got := float64(drops) / n; got < loss*0.9 || got > loss*1.1 {
			t.Errorf("loss %.2f: dropped %.4f", loss, got)
		}
	}
	same := 0
	for i := range 1000 {
		if lost(1, opACK, int64(i)*512, 1, 0.5) == lost(2, opACK, int64(i)*512, 1, 0.5) {
			same++
		}
	}
	if same < 400 || same > 600 {
		t.Errorf("seeds 1 and 2 agree on %d of 1000 packets at 50%% loss", same)
	}
}

func TestGetGivesUpOnASilentServer(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0") // receives, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	r, err := Get(pc.LocalAddr().String(), "f.bin", nil, Options{Timeout: 20 * time.Millisecond, Retries: 2})
	if err == nil || !strings.Contains(err.Error(), "no answer after 2 retries") {
		t.Fatalf("err = %v", err)
	}
	if r.Resends != 2 {
		t.Fatalf("resends = %d, want 2", r.Resends)
	}
}

func TestOACKBlockSize(t *testing.T) {
	tests := []struct {
		opts    string
		want    int
		wantErr bool
	}{
		{"blksize\x001468\x00", 1468, false},
		{"tsize\x00100\x00BLKSIZE\x00512\x00", 512, false},
		{"tsize\x00100\x00", 0, false},
		{"blksize\x00x\x00", 0, true},
		{"blksize\x0070000\x00", 0, true},
	}
	for _, tt := range tests {
		got, err := oackBlockSize([]byte(tt.opts))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("oackBlockSize(%q) = %d, %v; want %d, error %v", tt.opts, got, err, tt.want, tt.wantErr)
		}
	}
}
