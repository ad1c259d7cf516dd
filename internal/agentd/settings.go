package agentd

import (
	"fmt"
	"strconv"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// Setting is one configuration key: a `serve` flag, an environment
// variable and a key of the configuration file, all named after Name.
type Setting struct {
	Name, Default, Usage string
	parse                func(c *Config, name, v string) error
}

// Set parses v into the setting's field of c; the error names the flag and
// what it wants.
func (s Setting) Set(c *Config, v string) error { return s.parse(c, s.Name, v) }

// Settings lists every configuration key of the agent, with its default.
func Settings() []Setting {
	return []Setting{
		{"data-dir", "/var/lib/baremetal-agent", "directory for the store (agent.db), its seal key and the generated TLS certificate", str(func(c *Config) *string { return &c.DataDir })},
		{"api-addr", ":8443", "HTTPS address of the REST API", str(func(c *Config) *string { return &c.APIAddr })},
		{"boot-addr", ":8080", "plain-HTTP address for iPXE scripts, assets, templates and callbacks", str(func(c *Config) *string { return &c.BootAddr })},
		{"tftp-addr", ":69", "TFTP address for iPXE binaries", str(func(c *Config) *string { return &c.TFTPAddr })},
		{"boot-url", "", "boot base URL handed to machines (default: http://<boot-addr host or this host's address>:<port>)", str(func(c *Config) *string { return &c.BootURL })},
		{"token-file", "", "API token file: one token per line, '#' comments, 'readonly:<token>' for a read-only token; must be chmod 600 (required)", str(func(c *Config) *string { return &c.TokenFile })},
		{"tls-cert", "", "PEM certificate for the API (default: a self-signed one generated in --data-dir)", str(func(c *Config) *string { return &c.TLSCert })},
		{"tls-key", "", "PEM private key for --tls-cert", str(func(c *Config) *string { return &c.TLSKey })},
		{"deploy-image-dir", "", "directory holding the deploy ramdisk (vmlinuz, initrd.img; built by make deploy-image) that image profiles boot to write their image (empty: image profiles cannot boot)", str(func(c *Config) *string { return &c.DeployImageDir })},
		{"assets-dir", "", "directory of kernels, initrds and images served at /assets/ (empty: no local assets; profiles may use absolute URLs)", str(func(c *Config) *string { return &c.AssetsDir })},
		{"tftp-root", "", "TFTP root holding the iPXE binaries (default: those of Debian's ipxe package in /usr/lib/ipxe, copied into <data-dir>/tftp at start because the package links some of them from outside that directory)", str(func(c *Config) *string { return &c.TFTPRoot })},
		{"unknown-mac", "exit", "answer to a MAC the agent does not know: exit (boot from disk) or the name of a discovery boot profile", str(func(c *Config) *string { return &c.UnknownMAC })},
		{"tftp-timeout", "1s", "TFTP per-packet timeout: a lost datagram is re-sent after it, each further re-send after twice the wait before", dur(func(c *Config) *time.Duration { return &c.TFTPTimeout })},
		{"tftp-retries", "5", "TFTP re-sends of one datagram before the transfer fails", num(func(c *Config) *int { return &c.TFTPRetries })},
		{"tftp-window", "0", "TFTP sender window: blocks sent ahead of the client's acknowledgements (pin/tftp's anticipation; 0 = lock-step as RFC 1350, the default). A window of 16 is up to 2x faster on a clean link and works with EDK2 UEFI firmware and iPXE, but pin/tftp cannot recover a block lost inside a window (it re-sends the whole window and waits for every ACK in order, which no client sends again), so a transfer that loses a single packet fails after its retries (BENCHMARKS.md, lossy link: all of them at 1% loss). Use it only on a loss-free boot network", window(func(c *Config) *int { return &c.TFTPWindow })},
		{"tftp-max-transfers", "512", "TFTP transfers at once (each holds two file descriptors); a request beyond it gets one error datagram. Half of them may wait for the client's first ACK: a request beyond that ends the oldest such transfer, so requests with forged sources cannot keep real clients out", num(func(c *Config) *int { return &c.TFTPMaxTransfers })},
		{"tftp-max-per-client", "256", "TFTP transfers at once from one source address (a boot storm behind one relay or NAT address needs as many as it has machines)", num(func(c *Config) *int { return &c.TFTPMaxPerClient })},
		{"proxy-dhcp", "false", "answer PXE clients with ProxyDHCP (never hands out addresses; use when site DHCP cannot set next-server)", boolean(func(c *Config) *bool { return &c.ProxyDHCP })},
		{"proxy-dhcp-interface", "", "interface whose IPv4 address ProxyDHCP advertises as the TFTP server", str(func(c *Config) *string { return &c.ProxyDHCPInterface })},
		{"proxy-dhcp-addr", ":67", "ProxyDHCP listen address (port 4011 on the same host is opened too)", str(func(c *Config) *string { return &c.ProxyDHCPAddr })},
		{"bmc-max-concurrent", "20", "BMC operations in flight at once, across all BMCs", num(func(c *Config) *int { return &c.BMCMaxConcurrent })},
		{"bmc-request-timeout", "30s", "timeout of one Redfish request", dur(func(c *Config) *time.Duration { return &c.BMCRequestTimeout })},
		{"bmc-login-backoff", "30s", "wait after a BMC refuses a login before the same username and password are tried again on it; doubles per refusal up to 15m, so a wrong password does not lock the account", dur(func(c *Config) *time.Duration { return &c.BMCLoginBackoff })},
		{"provisioning-limit", "20", "machines in an active power/boot step at once (like Metal3's PROVISIONING_LIMIT)", num(func(c *Config) *int { return &c.ProvisioningLimit })},
		{"power-poll-interval", "60s", "how often a settled machine's power state is read to detect drift (0 disables)", durOrOff(func(c *Config) *time.Duration { return &c.PowerPollInterval })},
		{"wait-pxe-timeout", "10m", "how long a powered-on machine may take to ask for its boot script before it is power-cycled again", dur(func(c *Config) *time.Duration { return &c.WaitPXETimeout })},
		{"install-timeout", "60m", "how long an installer may run before its callback", dur(func(c *Config) *time.Duration { return &c.InstallTimeout })},
		{"boot-stall-warning", "5m", "how long a provisioning machine may go without a new boot step (script, kernel, each initrd, each template, callback) before its last_error says where the boot stalled (0 disables); the run still fails only at its timeout", durOrOff(func(c *Config) *time.Duration { return &c.BootStallWarning })},
		{"inventory-interval", "24h", "how often a settled machine's inventory is read again from its BMC, so changed hardware shows as drift in the next plan (0 disables; machines are spread over a tenth of it)", durOrOff(func(c *Config) *time.Duration { return &c.InventoryInterval })},
		{"step-retries", "3", "retries of a failed BMC step, and power cycles of a machine that never asked for PXE", num(func(c *Config) *int { return &c.StepRetries })},
		{"lease-duration", api.DefaultLeaseDuration.String(), "how long a writer's lease on a machine lasts after its last write or renewal", dur(func(c *Config) *time.Duration { return &c.LeaseDuration })},
	}
}

func str(field func(*Config) *string) func(*Config, string, string) error {
	return func(c *Config, _, v string) error { *field(c) = v; return nil }
}

func duration(field func(*Config) *time.Duration, zeroOff bool) func(*Config, string, string) error {
	return func(c *Config, name, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || (d == 0 && !zeroOff) {
			return fmt.Errorf("--%s %q: want a positive duration like 30s or 10m", name, v)
		}
		*field(c) = d
		return nil
	}
}

func dur(field func(*Config) *time.Duration) func(*Config, string, string) error {
	return duration(field, false)
}

// durOrOff takes 0 as "off".
func durOrOff(field func(*Config) *time.Duration) func(*Config, string, string) error {
	return duration(field, true)
}

func num(field func(*Config) *int) func(*Config, string, string) error {
	return func(c *Config, name, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("--%s %q: want a whole number of at least 1", name, v)
		}
		*field(c) = n
		return nil
	}
}

func window(field func(*Config) *int) func(*Config, string, string) error {
	return func(c *Config, name, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 64 {
			return fmt.Errorf("--%s %q: want 0 (lock-step) to 64 blocks", name, v)
		}
		*field(c) = n
		return nil
	}
}

func boolean(field func(*Config) *bool) func(*Config, string, string) error {
	return func(c *Config, name, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("--%s %q: want true or false", name, v)
		}
		*field(c) = b
		return nil
	}
}
