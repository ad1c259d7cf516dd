// Package reliability holds the cross-package reliability and security
// tests of issue 8: the real agent process killed mid-provisioning, hostile
// input against every listener, BMC faults seen through the API, secrets
// absent from every output. Each package keeps its own unit tests; these
// exercise the pieces wired together as an operator runs them.
package reliability

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// site is a real lab process (memory backend: simulated BMCs and PXE
// clients) and a real agent process on one data dir, restartable.
type site struct {
	t         *testing.T
	bin       string
	dir       string
	dataDir   string
	tokenFile string
	token     string
	apiAddr   string
	bootAddr  string
	tftpAddr  string
	bootURL   string
	agentArgs []string
	inventory []lab.InventoryEntry

	spec  testenv.AgentSpec
	lab   *testenv.Process
	agent *testenv.AgentProc
	// agentLog is every agent run's output, kills included.
	agentLog *testenv.Log
	labLog   *testenv.Log
	client   *client.Client
}

type siteOpts struct {
	machines int
	// extra serve flags (timeouts, limits).
	agentArgs []string
	// noLabBoot leaves the lab's machines without a boot URL: powered on,
	// they never ask for PXE, so a test can play the machine itself.
	noLabBoot bool
	// extra lab flags (e.g. --latency for slow BMCs).
	labArgs []string
}

func newSite(t *testing.T, o siteOpts) *site {
	t.Helper()
	s := &site{t: t, bin: testenv.AgentBinary(t), dir: t.TempDir(), agentLog: &testenv.Log{}, labLog: &testenv.Log{}}
	s.dataDir = filepath.Join(s.dir, "data")
	s.token = testenv.RandomHex(16)
	s.tokenFile = testenv.TokenFile(t, "# reliability tests", s.token, "readonly:ro-"+s.token)
	assets := testenv.Assets(t)
	api, boot, tftp := testenv.FreeTCP(t), testenv.FreeTCP(t), testenv.FreeUDP(t)
	s.apiAddr, s.bootAddr, s.tftpAddr = api.Addr, boot.Addr, tftp.Addr
	s.bootURL = "http://" + s.bootAddr
	extra := append([]string{"--boot-addr", s.bootAddr, "--boot-url", s.bootURL, "--tftp-addr", s.tftpAddr,
		"--assets-dir", assets, "--tftp-root", assets}, o.agentArgs...)
	s.spec = testenv.AgentSpec{DataDir: s.dataDir, TokenFile: s.tokenFile, Token: s.token, APIAddr: s.apiAddr, Args: extra}
	s.agentArgs = append([]string{"serve", "--data-dir", s.dataDir, "--token-file", s.tokenFile, "--api-addr", s.apiAddr}, extra...)

	if o.machines > 0 {
		args := []string{"--backend", "memory", "--machines", fmt.Sprint(o.machines), "--listen", testenv.FreeTCP(t).Release()}
		if !o.noLabBoot {
			args = append(args, "--boot-url", s.bootURL)
		}
		s.lab, s.inventory = testenv.StartLab(t, s.labLog, s.dir, append(args, o.labArgs...)...)
		require.Len(t, s.inventory, o.machines)
	}
	api.Release()
	boot.Release()
	tftp.Release()
	s.start()
	return s
}

// start runs the agent on the site's data dir and waits until it answers
// /readyz: the store opened, every listener is bound.
func (s *site) start() {
	s.t.Helper()
	s.agent = testenv.StartAgent(s.t, s.agentLog, s.spec)
	s.client = s.agent.Client
}

// httpsClient trusts exactly the certificate the agent generated.
func (s *site) httpsClient() *http.Client {
	s.t.Helper()
	hc := testenv.HTTPSClient(s.t, s.agent.CAPEM)
	hc.Timeout = 30 * time.Second
	return hc
}

// kill ends the agent with SIGKILL: no drain, no store close.
func (s *site) kill() {
	fmt.Fprintf(s.agentLog, "=== agent SIGKILL %s\n", time.Now().Format(time.RFC3339Nano))
	s.agent.Kill()
}

// stop ends the agent with SIGTERM and waits for a clean exit.
func (s *site) stop() {
	s.t.Helper()
	_ = s.agent.Stop(s.t)
}

// profile registers a boot profile that boots the assets the site serves.
func (s *site) profile(name string) {
	s.t.Helper()
	_, err := s.client.CreateBootProfile(context.Background(), api.BootProfileRequest{
		Name:      name,
		Kernel:    "vmlinuz",
		Initrds:   []string{"initrd.img"},
		Cmdline:   "console=ttyS0 baremetal.templates=user-data",
		Templates: map[string]string{"user-data": "#cloud-config\nhostname: {{ .Machine.Name }}\n"},
	})
	if err != nil {
		s.t.Fatalf("creating profile %s: %v", name, err)
	}
}

func (s *site) machineRequest(i int, profile string, state api.DesiredState) api.MachineRequest {
	lm := s.inventory[i]
	return api.MachineRequest{
		Name:        lm.Name,
		BMC:         api.BMCRequest{Endpoint: lm.Endpoint, Username: lm.Username, Password: lm.Password},
		MACs:        []string{lm.MAC},
		BootProfile: profile,
		State:       state,
	}
}

// events returns every event of a machine, oldest first.
func (s *site) events(ctx context.Context, name string) []api.Event {
	s.t.Helper()
	var out []api.Event
	var after uint64
	for {
		page, err := s.client.MachineEvents(ctx, name, after, 0)
		if err != nil {
			s.t.Fatalf("events of %s: %v", name, err)
		}
		out = append(out, page.Events...)
		if len(page.Events) == 0 || page.Next <= after {
			return out
		}
		after = page.Next
	}
}

// awaitT is testenv.Eventually for conditions that report their state.
func awaitT(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	testenv.Eventually(t, what, timeout, func() error {
		if ok, state := cond(); !ok {
			return fmt.Errorf("last: %s", state)
		}
		return nil
	})
}

func tail(s string) string { return testenv.Tail(s, 8000) }

var errNotYet = errors.New("not yet")
