package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/agentd"
)

// serveAgent is the child-process mode (`bootbench serve-agent ...`): the
// agent as agentd assembles it for `baremetal-agent serve`, in its own
// process so that its CPU time is accounted like the peers' and the load
// client's garbage collection does not run in the server's runtime. Only
// its boot edge is loaded; its API and reconciler sit idle, as on a site
// between provisioning runs.
func serveAgent(args []string) error {
	fs := flag.NewFlagSet("serve-agent", flag.ContinueOnError)
	tftpAddr := fs.String("tftp", "127.0.0.1:0", "TFTP listen address")
	httpAddr := fs.String("http", "", "HTTP boot listen address")
	root := fs.String("root", "", "TFTP root")
	assets := fs.String("assets", "", "assets directory")
	anticipate := fs.Int("anticipate", 0, "pin/tftp sender window (0: lock-step)")
	dataDir := fs.String("data", "", "the agent's data directory")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	token := make([]byte, 16)
	_, _ = rand.Read(token)
	tokenFile := filepath.Join(*dataDir, "tokens")
	if err := os.WriteFile(tokenFile, []byte(hex.EncodeToString(token)+"\n"), 0o600); err != nil {
		return err
	}
	cfg := agentd.Defaults()
	cfg.DataDir, cfg.TokenFile, cfg.APIAddr, cfg.TFTPAddr = *dataDir, tokenFile, "127.0.0.1:0", *tftpAddr
	cfg.BootAddr, cfg.BootURL = "127.0.0.1:0", "http://127.0.0.1:1"
	if *httpAddr != "" {
		cfg.BootAddr, cfg.BootURL = *httpAddr, "http://"+*httpAddr
	}
	cfg.TFTPRoot, cfg.AssetsDir, cfg.TFTPWindow = *root, *assets, *anticipate
	if cfg.TFTPRoot == "" {
		cfg.TFTPRoot = *dataDir // an empty root: this run serves HTTP only
	}
	// Info level to stderr, as the agent logs in production: a per-transfer
	// log line is part of what the agent costs.
	a, err := agentd.New(cfg, agentd.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			a.Close()
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			a.Close()
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	// New has bound every listener: the peers may start their load.
	fmt.Println("ready")
	return a.Run(ctx)
}
