package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"
)

// labMachines is how many simulated machines the shared lab serves; each
// acceptance test uses its own, so tests never see each other's machines.
const labMachines = 16

// accAgent is one real baremetal-agent process (serve) and one real lab
// process (memory backend with simulated PXE clients), shared by the
// acceptance tests of this package and stopped by TestMain.
type accAgent struct {
	endpoint  string
	token     string
	caPEM     string
	bootURL   string
	inventory map[string]lab.InventoryEntry
	assets    *httptest.Server // kernel and initrd the simulated machines fetch
	client    *client.Client
}

var acc = testenv.NewShared("baremetal-acc-", os.Getenv("BAREMETAL_ACC_KEEP") != "", startAgent)

func TestMain(m *testing.M) { testenv.Main(m, acc) }

// testAgent starts the shared agent and lab on first use. It skips the test
// unless TF_ACC is set, like every terraform-plugin-testing acceptance test.
func testAgent(t *testing.T) *accAgent {
	t.Helper()
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1 to run it against a real agent and the terraform CLI")
	}
	return acc.Get(t)
}

func startAgent(t testenv.T) *accAgent {
	dir := t.TempDir()
	a := &accAgent{token: testenv.RandomHex(16)}
	tokenFile := testenv.TokenFile(t, "# acceptance tests", a.token)
	// The simulated machines fetch the deploy ramdisk's first KiB only.
	deployDir := testenv.Assets(t)
	api, boot, labAddr, tftp := testenv.FreeTCP(t), testenv.FreeTCP(t), testenv.FreeTCP(t), testenv.FreeUDP(t)
	a.bootURL = "http://" + boot.Addr
	dataDir := filepath.Join(dir, "data")

	a.assets = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/vmlinuz", "/initrd.img":
			// Enough bytes for the simulated iPXE's ranged GET.
			http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(bytes.Repeat([]byte{0x7f}, 4096)))
		case "/image.raw":
			http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(accImage))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(a.assets.Close)

	_, machines := testenv.StartLab(t, testenv.LogFile(t, filepath.Join(dir, "lab.log")), dir, "--machines", fmt.Sprint(labMachines),
		"--backend", "memory", "--listen", labAddr.Release(), "--boot-url", a.bootURL)
	a.inventory = map[string]lab.InventoryEntry{}
	for _, m := range machines {
		a.inventory[m.Name] = m
	}
	a.endpoint = "https://" + api.Release()
	p := testenv.StartAgent(t, testenv.LogFile(t, filepath.Join(dir, "agent.log")), testenv.AgentSpec{
		DataDir: dataDir, TokenFile: tokenFile, Token: a.token, APIAddr: api.Addr,
		Args: []string{"--boot-addr", boot.Release(), "--boot-url", a.bootURL, "--tftp-addr", tftp.Release(),
			"--deploy-image-dir", deployDir,
			// Short enough for the tests to see BMC health and hardware drift
			// (recovery_test.go) in seconds.
			"--power-poll-interval", "2s", "--inventory-interval", "4s"},
	})
	a.caPEM = p.CAPEM
	var err error
	if a.client, err = client.New(client.Config{Endpoint: a.endpoint, Token: a.token, CACertPEM: a.caPEM}); err != nil {
		t.Fatal(err)
	}
	return a
}

// providerConfig points the provider at the test agent, verifying its
// generated certificate.
func (a *accAgent) providerConfig() string { return providerBlock(a.endpoint, a.token, a.caPEM) }

// providerBlock is a provider configuration that trusts caPEM.
func providerBlock(endpoint, token, caPEM string) string {
	return fmt.Sprintf(`
provider "baremetal" {
  endpoint    = %q
  token       = %q
  ca_cert_pem = <<-PEM
%s
PEM
}
`, endpoint, token, strings.TrimSpace(caPEM))
}

// machine returns lab machine n's inventory entry (lab-1, lab-2, ...).
func (a *accAgent) machine(t *testing.T, n int) lab.InventoryEntry {
	t.Helper()
	for _, m := range a.inventory {
		if strings.HasSuffix(m.Name, fmt.Sprintf("-%d", n)) {
			return m
		}
	}
	t.Fatalf("lab has no machine %d (inventory %v)", n, a.inventory)
	return lab.InventoryEntry{}
}

// redfishPower reads a lab system's PowerState over Redfish with the
// machine's own credentials, independently of the agent.
func redfishPower(m lab.InventoryEntry) (string, error) {
	req, err := http.NewRequest(http.MethodGet, m.Endpoint, nil)
	if err != nil {
		return "", err
	}
	req.SetBasicAuth(m.Username, m.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: HTTP %d", m.Endpoint, resp.StatusCode)
	}
	var sys struct{ PowerState string }
	if err := json.Unmarshal(body, &sys); err != nil {
		return "", fmt.Errorf("GET %s: %w", m.Endpoint, err)
	}
	return sys.PowerState, nil
}

// ctx bounds a direct client call made by a test.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func regexpMust(s string) *regexp.Regexp { return regexp.MustCompile(s) }

// accImage is the raw image the acceptance tests' image profiles deploy.
var accImage = bytes.Repeat([]byte("an OS image for the acceptance tests\n"), 1000)
