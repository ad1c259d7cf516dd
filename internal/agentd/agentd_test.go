package agentd_test

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/agentd"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"
)

// A taken port fails New, naming the listener and the address, before
// anything could report ready; the data dir's store is closed again, so a
// corrected start can open it.
func TestNewFailsOnATakenPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = taken.Close() })
	cfg := agentd.Defaults()
	cfg.DataDir, cfg.TokenFile, cfg.TFTPRoot = t.TempDir(), testenv.TokenFile(t, testenv.RandomHex(16)), t.TempDir()
	cfg.APIAddr, cfg.BootAddr, cfg.TFTPAddr = testenv.FreeTCP(t).Release(), taken.Addr().String(), testenv.FreeUDP(t).Release()
	_, err = agentd.New(cfg)
	require.ErrorContains(t, err, "boot listener on "+taken.Addr().String())

	cfg.BootAddr = testenv.FreeTCP(t).Release()
	a, err := agentd.New(cfg)
	require.NoError(t, err, "the failed start left the store locked")
	a.Close()
}

// Every problem of a configuration is reported at once, each naming its
// flag.
func TestValidateNamesEveryFlag(t *testing.T) {
	cfg := agentd.Defaults()
	cfg.DataDir, cfg.APIAddr, cfg.TLSCert = "", "8443", "cert.pem"
	err := cfg.Validate()
	for _, want := range []string{"--data-dir", "--token-file", "--tls-cert and --tls-key", "--api-addr"} {
		assert.ErrorContains(t, err, want)
	}
	for _, s := range agentd.Settings() {
		if s.Name == "tftp-window" {
			assert.ErrorContains(t, s.Set(&cfg, "65"), "--tftp-window \"65\": want 0 (lock-step) to 64 blocks")
		}
	}
}

// An agent on injected listeners serves on them and advertises the boot
// listener's address when no boot URL is set.
func TestInjectedListeners(t *testing.T) {
	cfg := agentd.Defaults()
	cfg.TFTPRoot = t.TempDir()
	boot := testenv.FreeTCP(t)
	a := testenv.StartInProc(t, cfg, testenv.InProcSpec{Boot: boot.Listener()})
	assert.Equal(t, "http://"+boot.Addr, a.BootURL())
	info, err := a.Client.Info(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "http://"+boot.Addr, info.BootURL)
}
