package agentd

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Config is the agent's configuration, typed. `baremetal-agent serve` parses
// its flags, environment and file into one (agent/config.go) and nothing
// parses it again. Errors name the flag, since that is what an operator set.
type Config struct {
	DataDir   string
	APIAddr   string
	BootAddr  string
	TFTPAddr  string
	BootURL   string // "": derived from BootAddr (see bootURL)
	TokenFile string
	TLSCert   string
	TLSKey    string
	// Version is reported by the API and the build_info metric.
	Version string

	// Boot edge.
	AssetsDir          string
	DeployImageDir     string
	TFTPRoot           string // "": Debian's iPXE binaries, staged into DataDir
	UnknownMAC         string
	TFTPTimeout        time.Duration
	TFTPRetries        int
	TFTPWindow         int
	TFTPMaxTransfers   int
	TFTPMaxPerClient   int
	ProxyDHCP          bool
	ProxyDHCPInterface string
	ProxyDHCPAddr      string
	// BMC access.
	BMCMaxConcurrent  int
	BMCRequestTimeout time.Duration
	BMCLoginBackoff   time.Duration
	// Reconciler. A zero PowerPollInterval, BootStallWarning or
	// InventoryInterval turns that behaviour off.
	ProvisioningLimit int
	PowerPollInterval time.Duration
	WaitPXETimeout    time.Duration
	InstallTimeout    time.Duration
	BootStallWarning  time.Duration
	InventoryInterval time.Duration
	StepRetries       int
	// API.
	LeaseDuration time.Duration
}

// Defaults is the configuration of `serve` without flags; in-process agents
// (tests, benches) start from it too, so they run what operators run.
func Defaults() Config {
	c := Config{Version: "dev"}
	for _, s := range Settings() {
		if err := s.Set(&c, s.Default); err != nil {
			panic("agentd: the default of --" + s.Name + " does not parse: " + err.Error())
		}
	}
	return c
}

// Validate reports what the settings cannot say on their own: the required
// ones and the addresses. Each error names its flag and what it wants.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir is required"))
	}
	if c.TokenFile == "" {
		errs = append(errs, errors.New("--token-file is required: the API never runs without tokens; create one with `umask 077; openssl rand -hex 32 > tokens`"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	for _, a := range []struct{ flag, addr string }{{"api-addr", c.APIAddr}, {"boot-addr", c.BootAddr}, {"tftp-addr", c.TFTPAddr}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: want HOST:PORT or :PORT (%v)", a.flag, a.addr, err))
		}
	}
	return errors.Join(errs...)
}

// bootURL is the advertised boot base URL: BootURL, or one derived from
// the boot listener's address. A wildcard listen address says nothing about
// where machines can reach the agent, so the host's first global unicast
// IPv4 stands in.
func bootURL(configured, bootAddr string) (string, bool, error) {
	if configured != "" {
		return strings.TrimSuffix(configured, "/"), false, nil
	}
	host, port, err := net.SplitHostPort(bootAddr)
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

// offWhenZero maps the flags' "0 disables" onto the reconciler's "negative
// disables" (its zero means "default").
func offWhenZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
