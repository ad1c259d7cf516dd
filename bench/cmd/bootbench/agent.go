package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/boot"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// benchLifecycle is the agent's reconciler seat during a benchmark. The
// files fetched here belong to no machine, so the boot edge has nothing to
// report, and there is no run whose token a callback could present.
type benchLifecycle struct{}

func (benchLifecycle) Signal(context.Context, string, model.Signal, map[string]string) {}

func (benchLifecycle) Callback(context.Context, string, string, model.CallbackReport) error {
	return model.ErrTokenRejected
}

func (benchLifecycle) DeployDisks(context.Context, string, string, []model.SeenDisk) (model.DeployTarget, error) {
	return model.DeployTarget{}, model.ErrTokenRejected
}

func (benchLifecycle) DeployProgress(context.Context, string, string, int64, time.Duration) error {
	return model.ErrTokenRejected
}

// serveAgent is the child-process mode (`bootbench serve-agent ...`): the
// agent's boot edge, built with boot.New as the agent builds it, in its own
// process so that its CPU time is accounted like the peers' and the load
// client's garbage collection does not run in the server's runtime.
func serveAgent(args []string) error {
	fs := flag.NewFlagSet("serve-agent", flag.ContinueOnError)
	tftpAddr := fs.String("tftp", "", "TFTP listen address")
	httpAddr := fs.String("http", "", "HTTP boot listen address")
	root := fs.String("root", "", "TFTP root")
	assets := fs.String("assets", "", "assets directory")
	anticipate := fs.Uint("anticipate", 0, "pin/tftp sender window (0: lock-step)")
	dataDir := fs.String("data", "", "directory for the store file")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, err := store.OpenBolt(filepath.Join(*dataDir, "agent.db"), store.BoltOptions{})
	if err != nil {
		return err
	}
	defer st.Close()
	bootURL := "http://127.0.0.1:1"
	if *httpAddr != "" {
		bootURL = "http://" + *httpAddr
	}
	// Info level to stderr, as the agent logs in production: a per-transfer
	// log line is part of what the agent costs.
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv, err := boot.New(boot.Config{
		TFTPRoot:       *root,
		AssetsDir:      *assets,
		BootURL:        bootURL,
		TFTPAnticipate: *anticipate,
		Logger:         logger,
	}, st, benchLifecycle{})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var serves []func() error
	if *tftpAddr != "" {
		pc, err := net.ListenPacket("udp", *tftpAddr)
		if err != nil {
			return err
		}
		serves = append(serves, func() error { return srv.ServeTFTP(ctx, pc) })
	}
	if *httpAddr != "" {
		ln, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			return err
		}
		serves = append(serves, func() error { return srv.ServeHTTP(ctx, ln) })
	}
	if len(serves) == 0 {
		return errors.New("serve-agent: no -tftp or -http address")
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	errs := make(chan error, len(serves))
	for _, s := range serves {
		go func() { errs <- s() }()
	}
	fmt.Println("ready")
	var first error
	for range serves {
		if err := <-errs; err != nil && first == nil {
			first = err
			stop()
		}
	}
	return first
}
