package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the agent's configuration. Every field is a `serve` flag, an
// environment variable BAREMETAL_AGENT_<FLAG_IN_UPPER_SNAKE> and a key of
// the --config YAML file (the flag's name, e.g. `data-dir: /srv/agent`).
// Precedence: flag > environment > file > default.
type Config struct {
	DataDir   string
	APIAddr   string
	BootAddr  string
	TFTPAddr  string
	BootURL   string
	TokenFile string
	TLSCert   string
	TLSKey    string
	LogFormat string
	LogLevel  string

	// Boot edge.
	AssetsDir          string
	DeployImageDir     string
	TFTPRoot           string
	UnknownMAC         string
	TFTPTimeout        string
	TFTPRetries        string
	TFTPWindow         string
	ProxyDHCP          string
	ProxyDHCPInterface string
	ProxyDHCPAddr      string
	// BMC access.
	BMCMaxConcurrent  string
	BMCRequestTimeout string
	BMCLoginBackoff   string
	// Reconciler.
	ProvisioningLimit string
	PowerPollInterval string
	WaitPXETimeout    string
	InstallTimeout    string
	BootStallWarning  string
	StepRetries       string
	// API.
	LeaseDuration string
}

// EnvPrefix prefixes every configuration environment variable.
const EnvPrefix = "BAREMETAL_AGENT_"

type option struct {
	name, def, usage string
	field            func(*Config) *string
}

var options = []option{
	{"data-dir", "/var/lib/baremetal-agent", "directory for the store (agent.db), its seal key and the generated TLS certificate", func(c *Config) *string { return &c.DataDir }},
	{"api-addr", ":8443", "HTTPS address of the REST API", func(c *Config) *string { return &c.APIAddr }},
	{"boot-addr", ":8080", "plain-HTTP address for iPXE scripts, assets, templates and callbacks", func(c *Config) *string { return &c.BootAddr }},
	{"tftp-addr", ":69", "TFTP address for iPXE binaries", func(c *Config) *string { return &c.TFTPAddr }},
	{"boot-url", "", "boot base URL handed to machines (default: http://<boot-addr host or this host's address>:<port>)", func(c *Config) *string { return &c.BootURL }},
	{"token-file", "", "API token file: one token per line, '#' comments, 'readonly:<token>' for a read-only token; must be chmod 600 (required)", func(c *Config) *string { return &c.TokenFile }},
	{"tls-cert", "", "PEM certificate for the API (default: a self-signed one generated in --data-dir)", func(c *Config) *string { return &c.TLSCert }},
	{"tls-key", "", "PEM private key for --tls-cert", func(c *Config) *string { return &c.TLSKey }},
	{"log-format", "text", "log format: text or json", func(c *Config) *string { return &c.LogFormat }},
	{"log-level", "info", "log level: debug, info, warn or error", func(c *Config) *string { return &c.LogLevel }},

	{"deploy-image-dir", "", "directory holding the deploy ramdisk (vmlinuz, initrd.img; built by make deploy-image) that image profiles boot to write their image (empty: image profiles cannot boot)", func(c *Config) *string { return &c.DeployImageDir }},
	{"assets-dir", "", "directory of kernels, initrds and images served at /assets/ (empty: no local assets; profiles may use absolute URLs)", func(c *Config) *string { return &c.AssetsDir }},
	{"tftp-root", "", "TFTP root holding the iPXE binaries (default: those of Debian's ipxe package in /usr/lib/ipxe, copied into <data-dir>/tftp at start because the package links some of them from outside that directory)", func(c *Config) *string { return &c.TFTPRoot }},
	{"unknown-mac", "exit", "answer to a MAC the agent does not know: exit (boot from disk) or the name of a discovery boot profile", func(c *Config) *string { return &c.UnknownMAC }},
	{"tftp-timeout", "1s", "TFTP per-packet timeout: a lost datagram is re-sent after it, each further re-send after twice the wait before", func(c *Config) *string { return &c.TFTPTimeout }},
	{"tftp-retries", "5", "TFTP re-sends of one datagram before the transfer fails", func(c *Config) *string { return &c.TFTPRetries }},
	{"tftp-window", "0", "TFTP sender window: blocks sent ahead of the client's acknowledgements (pin/tftp's anticipation; 0 = lock-step as RFC 1350, the default). A window of 16 is up to 2x faster on a clean link and works with EDK2 UEFI firmware and iPXE, but pin/tftp cannot recover a block lost inside a window (it re-sends the whole window and waits for every ACK in order, which no client sends again), so a transfer that loses a single packet fails after its retries (BENCHMARKS.md, lossy link: all of them at 1% loss). Use it only on a loss-free boot network. The window opens only after the client's first ACK (of the options), so a request without options is served lock-step", func(c *Config) *string { return &c.TFTPWindow }},
	{"proxy-dhcp", "false", "answer PXE clients with ProxyDHCP (never hands out addresses; use when site DHCP cannot set next-server)", func(c *Config) *string { return &c.ProxyDHCP }},
	{"proxy-dhcp-interface", "", "interface whose IPv4 address ProxyDHCP advertises as the TFTP server", func(c *Config) *string { return &c.ProxyDHCPInterface }},
	{"proxy-dhcp-addr", ":67", "ProxyDHCP listen address (port 4011 on the same host is opened too)", func(c *Config) *string { return &c.ProxyDHCPAddr }},
	{"bmc-max-concurrent", "20", "BMC operations in flight at once, across all BMCs", func(c *Config) *string { return &c.BMCMaxConcurrent }},
	{"bmc-request-timeout", "30s", "timeout of one Redfish request", func(c *Config) *string { return &c.BMCRequestTimeout }},
	{"bmc-login-backoff", "30s", "wait after a BMC refuses a login before the same username and password are tried again on it; doubles per refusal up to 15m, so a wrong password does not lock the account", func(c *Config) *string { return &c.BMCLoginBackoff }},
	{"provisioning-limit", "20", "machines in an active power/boot step at once (like Metal3's PROVISIONING_LIMIT)", func(c *Config) *string { return &c.ProvisioningLimit }},
	{"power-poll-interval", "60s", "how often a settled machine's power state is read to detect drift (0 disables)", func(c *Config) *string { return &c.PowerPollInterval }},
	{"wait-pxe-timeout", "10m", "how long a powered-on machine may take to ask for its boot script before it is power-cycled again", func(c *Config) *string { return &c.WaitPXETimeout }},
	{"install-timeout", "60m", "how long an installer may run before its callback", func(c *Config) *string { return &c.InstallTimeout }},
	{"boot-stall-warning", "5m", "how long a provisioning machine may go without a new boot step (script, kernel, each initrd, each template, callback) before its last_error says where the boot stalled (0 disables); the run still fails only at its timeout", func(c *Config) *string { return &c.BootStallWarning }},
	{"step-retries", "3", "retries of a failed BMC step, and power cycles of a machine that never asked for PXE", func(c *Config) *string { return &c.StepRetries }},
	{"lease-duration", "2m", "how long a writer's lease on a machine lasts after its last write or renewal", func(c *Config) *string { return &c.LeaseDuration }},
}

func envName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// loadConfig resolves the serve configuration from args, the environment
// (getenv) and the --config file.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "YAML configuration file (keys are the flag names); env "+envName("config"))
	values := make(map[string]*string, len(options))
	for _, o := range options {
		values[o.name] = fs.String(o.name, o.def, fmt.Sprintf("%s (env %s)", o.usage, envName(o.name)))
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: baremetal-agent serve [flags]\n\nEach flag can also be set by its environment variable or in the --config YAML file;\na flag beats the environment, which beats the file.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("serve takes no arguments, got %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	path := *configFile
	if !set["config"] {
		path = getenv(envName("config"))
	}
	file := map[string]string{}
	if path != "" {
		var err error
		if file, err = readConfigFile(path); err != nil {
			return Config{}, err
		}
	}
	var cfg Config
	for _, o := range options {
		v := o.def
		if fv, ok := file[o.name]; ok {
			v = fv
		}
		if ev := getenv(envName(o.name)); ev != "" {
			v = ev
		}
		if set[o.name] {
			v = *values[o.name]
		}
		*o.field(&cfg) = v
	}
	return cfg, cfg.validate()
}

func readConfigFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	out := map[string]string{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&out); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config file %s: %w (want `flag-name: value` lines)", path, err)
	}
	for k := range out {
		known := false
		for _, o := range options {
			known = known || o.name == k
		}
		if !known {
			return nil, fmt.Errorf("config file %s: unknown key %q (keys are the serve flag names, e.g. data-dir)", path, k)
		}
	}
	return out, nil
}

func (c Config) validate() error {
	if c.DataDir == "" {
		return errors.New("--data-dir is required")
	}
	if c.TokenFile == "" {
		return errors.New("--token-file is required: the API never runs without tokens; create one with `umask 077; openssl rand -hex 32 > tokens`")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	for name, addr := range map[string]string{"api-addr": c.APIAddr, "boot-addr": c.BootAddr, "tftp-addr": c.TFTPAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("--%s %q: want HOST:PORT or :PORT (%v)", name, addr, err)
		}
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	if _, err := c.tuning(); err != nil {
		return err
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", c.LogFormat)
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	level, _ := parseLevel(cfg.LogLevel) // validated
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// bootURL is the advertised boot base URL: --boot-url, or one derived from
// --boot-addr. A wildcard listen address says nothing about where machines
// can reach the agent, so the host's first global unicast IPv4 stands in.
func (c Config) bootURL() (string, bool, error) {
	if c.BootURL != "" {
		return strings.TrimSuffix(c.BootURL, "/"), false, nil
	}
	host, port, err := net.SplitHostPort(c.BootAddr)
	if err != nil {
		return "", false, err
	}
	guessed := false
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host, guessed = hostIPv4(), true
	}
	return "http://" + net.JoinHostPort(host, port), guessed, nil
}

func hostIPv4() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// tuning holds the typed values of the numeric, duration and boolean flags.
type tuning struct {
	tftpTimeout, bmcRequestTimeout, powerPoll, waitPXE, install, bootStall    time.Duration
	leaseDuration, bmcLoginBackoff                                            time.Duration
	tftpRetries, tftpWindow, bmcMaxConcurrent, provisioningLimit, stepRetries int
	proxyDHCP                                                                 bool
}

func (c Config) tuning() (tuning, error) {
	var t tuning
	var errs []error
	dur := func(flag, v string, dst *time.Duration, allowZero bool) {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || (d == 0 && !allowZero) {
			errs = append(errs, fmt.Errorf("--%s %q: want a positive duration like 30s or 10m", flag, v))
			return
		}
		*dst = d
	}
	num := func(flag, v string, dst *int) {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("--%s %q: want a whole number of at least 1", flag, v))
			return
		}
		*dst = n
	}
	dur("tftp-timeout", c.TFTPTimeout, &t.tftpTimeout, false)
	dur("bmc-request-timeout", c.BMCRequestTimeout, &t.bmcRequestTimeout, false)
	dur("bmc-login-backoff", c.BMCLoginBackoff, &t.bmcLoginBackoff, false)
	dur("power-poll-interval", c.PowerPollInterval, &t.powerPoll, true)
	dur("wait-pxe-timeout", c.WaitPXETimeout, &t.waitPXE, false)
	dur("install-timeout", c.InstallTimeout, &t.install, false)
	dur("boot-stall-warning", c.BootStallWarning, &t.bootStall, true)
	dur("lease-duration", c.LeaseDuration, &t.leaseDuration, false)
	num("tftp-retries", c.TFTPRetries, &t.tftpRetries)
	if n, err := strconv.Atoi(c.TFTPWindow); err != nil || n < 0 || n > 64 {
		errs = append(errs, fmt.Errorf("--tftp-window %q: want 0 (lock-step) to 64 blocks", c.TFTPWindow))
	} else {
		t.tftpWindow = n
	}
	num("bmc-max-concurrent", c.BMCMaxConcurrent, &t.bmcMaxConcurrent)
	num("provisioning-limit", c.ProvisioningLimit, &t.provisioningLimit)
	num("step-retries", c.StepRetries, &t.stepRetries)
	b, err := strconv.ParseBool(c.ProxyDHCP)
	if err != nil {
		errs = append(errs, fmt.Errorf("--proxy-dhcp %q: want true or false", c.ProxyDHCP))
	}
	t.proxyDHCP = b
	return t, errors.Join(errs...)
}
