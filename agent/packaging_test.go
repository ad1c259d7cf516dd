package main

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The .deb and .rpm install packaging/config.yaml as
// /etc/baremetal-agent/config.yaml, which the unit passes to serve: it must
// load as it ships, and so must the settings it offers commented out, once
// an operator uncomments them.
func TestPackagedConfigLoads(t *testing.T) {
	data, err := os.ReadFile("../packaging/config.yaml")
	require.NoError(t, err)
	noEnv := func(string) string { return "" }

	cfg, err := loadConfig([]string{"--config", "../packaging/config.yaml"}, noEnv, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "/var/lib/baremetal-agent", cfg.DataDir, "the unit's StateDirectory")
	assert.Equal(t, "/etc/baremetal-agent/tokens", cfg.TokenFile)
	assert.Equal(t, ":69", cfg.TFTPAddr)

	commented := regexp.MustCompile(`(?m)^# ([a-z-]+: \S+)$`)
	require.GreaterOrEqual(t, len(commented.FindAll(data, -1)), 4, "the examples this test uncomments")
	path := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(path, commented.ReplaceAll(data, []byte("$1")), 0o600))
	cfg, err = loadConfig([]string{"--config", path}, noEnv, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "http://10.0.0.2:8080", cfg.BootURL)
	assert.Equal(t, "eth1", cfg.ProxyDHCPInterface)
}
