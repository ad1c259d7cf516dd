package store

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

func macFor(i int) string {
	return fmt.Sprintf("52:54:%02x:%02x:%02x:01", i>>16&0xff, i>>8&0xff, i&0xff)
}

// seed loads n machines with eventsEach events apiece in a few large
// transactions, so benchmarks start from a realistically full file without
// paying one fsync per object.
func seed(tb testing.TB, s *Bolt, n, eventsEach int) {
	tb.Helper()
	const chunk = 500
	for start := 0; start < n; start += chunk {
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i := start; i < min(start+chunk, n); i++ {
				m := testMachine(fmt.Sprintf("seed%d", i), macFor(i))
				m.Version, m.Revision = 1, 1
				data, err := s.encodeMachine(m)
				if err != nil {
					return err
				}
				if err := tx.Bucket(bucketMachines).Put([]byte(m.Name), data); err != nil {
					return err
				}
				if err := claimMACs(tx, m.Name, nil, m.MACs); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	ctx := context.Background()
	for i := 0; i < n && eventsEach > 0; i += n / 10 {
		for range eventsEach {
			if _, err := s.AppendEvent(ctx, model.Event{Machine: fmt.Sprintf("seed%d", i), Type: "x"}); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// The sub-benchmarks at 100 and 5000 machines should cost about the same per
// operation: nothing on these paths scans the machines.
var benchSizes = []int{100, 5000}

func BenchmarkCreateMachine(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint("machines=", n), func(b *testing.B) {
			s := openTest(b, "", BoltOptions{})
			seed(b, s, n, 0)
			ctx := context.Background()
			i := 0
			for b.Loop() {
				i++
				if _, err := s.CreateMachine(ctx, testMachine(fmt.Sprintf("new%d", i), macFor(n+i))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkUpdateMachine(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint("machines=", n), func(b *testing.B) {
			s := openTest(b, "", BoltOptions{})
			seed(b, s, n, 0)
			ctx := context.Background()
			for b.Loop() {
				if _, err := s.UpdateMachine(ctx, "seed42", func(m *model.Machine) (bool, error) {
					m.Status.Phase = model.PhaseProvisioning
					return false, nil
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkMachineByMAC(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint("machines=", n), func(b *testing.B) {
			s := openTest(b, "", BoltOptions{})
			seed(b, s, n, 0)
			ctx := context.Background()
			i := 0
			for b.Loop() {
				i = (i + 7919) % n
				if m, err := s.MachineByMAC(ctx, macFor(i)); err != nil || m.Name != fmt.Sprintf("seed%d", i) {
					b.Fatalf("%v, %v", m, err)
				}
			}
		})
	}
}

// BenchmarkAppendEvent appends to a log already at its cap, the steady state
// of a long-lived machine, so every append also drops the oldest event.
func BenchmarkAppendEvent(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint("machines=", n), func(b *testing.B) {
			s := openTest(b, "", BoltOptions{MaxEventsPerMachine: 100})
			seed(b, s, n, 100)
			ctx := context.Background()
			for b.Loop() {
				if _, err := s.AppendEvent(ctx, model.Event{Machine: "seed0", Type: "x", Message: "power on"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUpdateMachineParallel is the provisioning load: many machines in
// flight, each goroutine writing the status of its own machine, with fsync
// on as in production. ns/op is per write across all goroutines.
func BenchmarkUpdateMachineParallel(b *testing.B) {
	for _, writers := range []int{2, 16, 128} {
		b.Run(fmt.Sprint("writers=", writers), func(b *testing.B) {
			s := openTest(b, "", BoltOptions{})
			seed(b, s, writers, 0)
			ctx := context.Background()
			var next atomic.Int64
			b.SetParallelism((writers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			before := s.commits.Load()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				name := fmt.Sprintf("seed%d", (next.Add(1)-1)%int64(writers))
				for pb.Next() {
					if _, err := s.UpdateMachine(ctx, name, func(m *model.Machine) (bool, error) {
						m.Status.Phase = model.PhaseProvisioning
						return false, nil
					}); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.ReportMetric(float64(s.commits.Load()-before)/float64(b.N), "commits/write")
		})
	}
}
