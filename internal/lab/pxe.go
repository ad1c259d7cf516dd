package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// PXEResult records what a simulated PXE boot fetched and posted.
type PXEResult struct {
	MAC string
	// ScriptURL and Script are the first boot script, <bootURL>/boot/<mac>.
	ScriptURL string
	Script    string
	// Chained lists the scripts followed through `chain`, in order.
	Chained []string
	// Exit is set when the script chose to boot from the local disk
	// (`exit` or `sanboot`): nothing else was fetched.
	Exit bool

	Kernel  *Fetch
	Initrds []Fetch
	// Cmdline is the kernel's command line; it holds the run token.
	Cmdline string

	// From the cmdline convention baremetal.url/machine/token/templates.
	BaseURL string
	Machine string
	Token   string

	Templates []TemplateFetch
	// Address is what the callback reported; CallbackStatus is the agent's
	// HTTP answer to it (0: not posted).
	Address        string
	CallbackStatus int

	// Deploy is set when the kernel was the agent's deploy ramdisk
	// (baremetal.mode=deploy): the simulated image deploy.
	Deploy *DeployResult
}

// DeployResult is what a simulated deploy ramdisk did. It writes nothing:
// it reads the whole image, checks its checksum, fetches the config
// drive's files and reports the image written.
type DeployResult struct {
	Disk         string
	BytesWritten int64
	// Checksum is what the image read hashed to, "sha256:..." or "sha512:...".
	Checksum    string
	ConfigDrive map[string]string // file name -> content
	// OSCallback is where the deployed OS calls back when it boots (its
	// cloud-init's user-data would hold the same URL); empty after a failed
	// deploy.
	OSCallback string
	// Wipe is set for a clean: the level the agent asked for.
	Wipe string
}

// Fetch is one boot file the client fetched (its first KiB, as a ROM
// starting a download would).
type Fetch struct {
	URL    string
	Status int
	Bytes  int
}

// TemplateFetch is one rendered template the simulated installer fetched.
type TemplateFetch struct {
	Name   string
	Status int
	Body   string
}

const (
	maxScript   = 1 << 20
	maxTemplate = 4 << 20
	// maxChain bounds chained scripts: a loop must end in an error.
	maxChain = 4
)

// SimulatePXEBoot acts as the machine with NIC mac would when it network
// boots from the agent at bootURL: it fetches <bootURL>/boot/<mac>, follows
// `chain`, fetches the kernel and initrds the script names, and then plays
// the installer the kernel command line points at (baremetal.url=,
// baremetal.machine=, baremetal.token=, baremetal.templates=a,b): it fetches
// each template and posts the callback with a deterministic address
// (10.77.x.y from the MAC's last two bytes). A script that exits boots the
// local disk: the result has Exit set and nothing else happens.
//
// The result describes everything done so far even when err is set. Errors
// never include the token.
func SimulatePXEBoot(ctx context.Context, hc *http.Client, bootURL, mac string) (*PXEResult, error) {
	return simulateBoot(ctx, hc, bootURL, mac, []model.SeenDisk{{Name: "sda", SizeBytes: 480103981056, Model: "Lab SSD 480", Serial: "LAB0"}}, nil)
}

// simulateBoot is SimulatePXEBoot for a machine with the given disks,
// which a deploy ramdisk reports. written, when set, learns where the
// deployed OS will call back, before the agent hears of the image.
func simulateBoot(ctx context.Context, hc *http.Client, bootURL, mac string, disks []model.SeenDisk, written func(osCallback string)) (*PXEResult, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	nmac, err := model.NormalizeMAC(mac)
	if err != nil {
		return nil, fmt.Errorf("simulated PXE boot: %w", err)
	}
	res := &PXEResult{MAC: nmac, ScriptURL: strings.TrimRight(bootURL, "/") + "/boot/" + nmac}
	fail := func(err error) (*PXEResult, error) {
		return res, fmt.Errorf("simulated PXE boot of %s: %w", nmac, err)
	}

	script, status, err := httpGet(ctx, hc, res.ScriptURL, maxScript)
	if err != nil {
		return fail(err)
	}
	if status != http.StatusOK {
		return fail(fmt.Errorf("GET %s: HTTP %d", res.ScriptURL, status))
	}
	res.Script = script
	vars := map[string]string{"mac": nmac, "net0/mac": nmac}
	base, err := url.Parse(res.ScriptURL)
	if err != nil {
		return fail(err)
	}
	plan, err := PlanIPXEScript(script, base, vars)
	if err != nil {
		return fail(fmt.Errorf("boot script %s: %w", res.ScriptURL, err))
	}
	for plan.Chain != "" {
		if len(res.Chained) >= maxChain {
			return fail(fmt.Errorf("more than %d chained scripts", maxChain))
		}
		res.Chained = append(res.Chained, plan.Chain)
		script, status, err := httpGet(ctx, hc, plan.Chain, maxScript)
		if err != nil {
			return fail(err)
		}
		if status != http.StatusOK {
			return fail(fmt.Errorf("chain %s: HTTP %d", redact(plan.Chain), status))
		}
		if base, err = url.Parse(plan.Chain); err != nil {
			return fail(err)
		}
		if plan, err = PlanIPXEScript(script, base, vars); err != nil {
			return fail(fmt.Errorf("chained script %s: %w", redact(base.String()), err))
		}
	}
	if plan.Exit {
		res.Exit = true
		return res, nil
	}

	k, err := fetchHead(ctx, hc, plan.Kernel)
	res.Kernel = &k
	if err != nil {
		return fail(fmt.Errorf("kernel: %w", err))
	}
	for _, u := range plan.Initrds {
		f, err := fetchHead(ctx, hc, u)
		res.Initrds = append(res.Initrds, f)
		if err != nil {
			return fail(fmt.Errorf("initrd: %w", err))
		}
	}
	res.Cmdline = strings.Join(plan.KernelArgs, " ")

	args := ParseKernelArgs(plan.KernelArgs)
	res.BaseURL, res.Machine, res.Token = args.URL, args.Machine, args.Token
	if args.URL == "" || args.Machine == "" || args.Token == "" {
		return fail(errors.New("the kernel command line lacks baremetal.url, baremetal.machine or baremetal.token: no installer to play"))
	}
	base2 := strings.TrimRight(args.URL, "/") + "/machines/" + url.PathEscape(args.Machine)
	q := "?token=" + url.QueryEscape(args.Token)
	if args.Clean {
		if err := simulateClean(ctx, hc, res, base2, q, disks); err != nil {
			return fail(err)
		}
		return res, nil
	}
	if args.Deploy {
		if err := simulateDeploy(ctx, hc, res, base2, q, disks, written); err != nil {
			return fail(err)
		}
		return res, nil
	}

	report := model.CallbackReport{Hostname: args.Machine, Status: "ok"}
	var tmplErr error
	for _, t := range args.Templates {
		u := base2 + "/templates/" + url.PathEscape(t) + q
		body, status, err := httpGet(ctx, hc, u, maxTemplate)
		if err != nil {
			return fail(fmt.Errorf("template %q: %w", t, err))
		}
		res.Templates = append(res.Templates, TemplateFetch{Name: t, Status: status, Body: body})
		if status != http.StatusOK && tmplErr == nil {
			tmplErr = fmt.Errorf("template %q: GET %s: HTTP %d", t, redact(u), status)
		}
	}
	if tmplErr != nil {
		// An installer without its template cannot install; it says so.
		report.Status = "failed"
		report.LogTail = "simulated installer: " + tmplErr.Error()
	} else {
		res.Address = addressForMAC(nmac)
		report.Addresses = []string{res.Address}
		report.LogTail = "simulated installer: fetched " + fmt.Sprint(len(res.Templates)) + " template(s)"
	}
	status, err = postCallback(ctx, hc, base2+"/callback"+q, report)
	res.CallbackStatus = status
	if err != nil {
		return fail(fmt.Errorf("callback: %w", err))
	}
	if tmplErr != nil {
		return fail(tmplErr)
	}
	if status < 200 || status > 299 {
		return fail(fmt.Errorf("callback POST %s: HTTP %d", redact(base2+"/callback"), status))
	}
	return res, nil
}

// redact drops the query, where the run token travels.
func redact(raw string) string {
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		return raw[:i] + "?…"
	}
	return raw
}

// transportErr strips the URL (and its token) from a client error.
func transportErr(method, raw string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("%s %s: %w", method, redact(raw), err)
}

func httpGet(ctx context.Context, hc *http.Client, raw string, limit int64) (string, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return "", 0, fmt.Errorf("GET %s: %w", redact(raw), err)
	}
	req.Header.Set("User-Agent", "iPXE/1.21.1 (openbaremetal-lab simulated)")
	resp, err := hc.Do(req)
	if err != nil {
		return "", 0, transportErr("GET", raw, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return "", resp.StatusCode, transportErr("GET", raw, err)
	}
	if int64(len(b)) > limit {
		return "", resp.StatusCode, fmt.Errorf("GET %s: body larger than %d bytes", redact(raw), limit)
	}
	return string(b), resp.StatusCode, nil
}

// fetchHead reads the first KiB of a boot file: enough to prove it is
// served without moving a whole kernel in every test.
func fetchHead(ctx context.Context, hc *http.Client, raw string) (Fetch, error) {
	f := Fetch{URL: raw}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return f, fmt.Errorf("GET %s: %w", redact(raw), err)
	}
	req.Header.Set("Range", "bytes=0-1023")
	req.Header.Set("User-Agent", "iPXE/1.21.1 (openbaremetal-lab simulated)")
	resp, err := hc.Do(req)
	if err != nil {
		return f, transportErr("GET", raw, err)
	}
	defer resp.Body.Close()
	f.Status = resp.StatusCode
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 1024))
	f.Bytes = int(n)
	if err != nil {
		return f, transportErr("GET", raw, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		return f, fmt.Errorf("GET %s: HTTP %d", redact(raw), resp.StatusCode)
	}
	return f, nil
}

// Like lab-image/init's installer, the callback is tried up to
// callbackAttempts times, callbackPause apart, while the agent cannot be
// reached or answers 5xx: an agent restarting mid-install must not cost
// the machine its run. An answer of 4xx (a refused token) is final.
var (
	callbackAttempts = 5
	callbackPause    = 2 * time.Second
)

func postCallback(ctx context.Context, hc *http.Client, raw string, v any) (int, error) {
	for i := 1; ; i++ {
		status, err := post(ctx, hc, raw, v)
		if (err == nil && status < 500) || i >= callbackAttempts {
			return status, err
		}
		select {
		case <-ctx.Done():
			return status, err
		case <-time.After(callbackPause):
		}
	}
}

func post(ctx context.Context, hc *http.Client, raw string, v any) (int, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, raw, bytes.NewReader(b))
	if err != nil {
		return 0, fmt.Errorf("POST %s: %w", redact(raw), err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, transportErr("POST", raw, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}
