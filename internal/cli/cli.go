// Package cli is baremetalctl, the operator's command line for day-2 work
// on an agent: list and inspect machines, profiles and clusters, run power
// and provisioning actions, delete (or force-delete) a stuck machine, and
// follow a rollout. It talks to the agent only through internal/client, with
// the same configuration as the Terraform provider (BAREMETAL_ENDPOINT,
// BAREMETAL_TOKEN, BAREMETAL_CA_CERT_PEM), so whatever works for Terraform
// works here.
package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
)

// Exit codes, so scripts can branch without parsing text.
const (
	ExitOK          = 0
	ExitError       = 1 // anything not covered below (e.g. a BMC action failed at the agent)
	ExitUsage       = 2 // bad command line or configuration
	ExitNotFound    = 3 // the machine, profile, cluster or template does not exist
	ExitAuth        = 4 // token missing, wrong, or read-only for a write
	ExitRejected    = 5 // the agent refused: conflict, validation, machine busy
	ExitUnavailable = 6 // no answer: agent down, unreachable, TLS not trusted
	ExitFailed      = 7 // the thing watched ended failed (machine failed, rollout paused or failed)
	ExitPending     = 8 // not done: rollout still converging, or --timeout reached
)

// Environment variables, shared with the Terraform provider.
const (
	EnvEndpoint  = "BAREMETAL_ENDPOINT"
	EnvToken     = "BAREMETAL_TOKEN"
	EnvCACertPEM = "BAREMETAL_CA_CERT_PEM"
	EnvInsecure  = "BAREMETAL_INSECURE"
)

const usage = `Usage: baremetalctl [global flags] <command> [args] [flags]

Commands:
  machines list [--cluster C] [--role R] [--phase P] [--state S]
  machines show NAME
  machines events NAME [--follow] [--limit N]
  provision NAME [--wait]         start provisioning a machine that is not provisioned
  reprovision NAME [--wait]       reinstall a machine now (its disk is overwritten)
  reboot NAME                     hard reset through the BMC
  power on|off|cycle NAME         power through the BMC (off is a graceful shutdown)
  delete NAME [--force] [--wait]  delete a machine; --force removes it at once,
                                  without powering it off (the way out of a stuck one)
  profiles list | profiles show NAME
  templates list [PROFILE]        the site's snippets, or a profile's templates
  templates show [PROFILE] NAME   a snippet's source, or a profile's template's
  clusters list | clusters show NAME
  rollout status CLUSTER|PROFILE [--watch] [--interval D]

Global flags (anywhere on the line):
  --endpoint URL     agent API, e.g. https://agent:8443     (env BAREMETAL_ENDPOINT)
  --token-file FILE  file whose first token line is used    (env BAREMETAL_TOKEN holds the token)
  --ca-cert FILE     PEM of the agent's CA or certificate   (env BAREMETAL_CA_CERT_PEM holds the PEM)
  --insecure         skip TLS verification                  (env BAREMETAL_INSECURE=true)
  -o, --output       table (default) or json
  --timeout D        give up after D (e.g. 10m); 0 waits forever
  -v                 log retries to stderr

Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 auth, 5 rejected by the
agent, 6 agent unreachable, 7 failed, 8 not done yet or timed out.
`

// Env reads an environment variable; os.Getenv in the binary.
type Env func(string) string

// globals are the flags every command accepts.
type globals struct {
	endpoint  string
	tokenFile string
	caCert    string
	insecure  bool
	output    string
	timeout   time.Duration
	verbose   bool
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.endpoint, "endpoint", "", "agent API URL")
	fs.StringVar(&g.tokenFile, "token-file", "", "file holding the API token")
	fs.StringVar(&g.caCert, "ca-cert", "", "PEM file of the CA to trust")
	fs.BoolVar(&g.insecure, "insecure", false, "skip TLS verification")
	fs.StringVar(&g.output, "output", "table", "table or json")
	fs.StringVar(&g.output, "o", "table", "table or json")
	fs.DurationVar(&g.timeout, "timeout", 0, "give up after this long (0: no limit)")
	fs.BoolVar(&g.verbose, "v", false, "log retries to stderr")
}

// options are the flags of single commands.
type options struct {
	filter   client.MachineFilter
	follow   bool
	limit    int
	wait     bool
	force    bool
	watch    bool
	interval time.Duration
}

// app is one invocation.
type app struct {
	g      globals
	o      options
	env    Env
	stdout io.Writer
	stderr io.Writer
	// tty says stdout is a terminal, where watch redraws in place.
	tty    bool
	client *client.Client
}

// Run runs baremetalctl with args (without the program name) and returns
// the process exit code.
func Run(ctx context.Context, args []string, env Env, stdout, stderr io.Writer) int {
	a := &app{env: env, stdout: stdout, stderr: stderr}
	if f, ok := stdout.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			a.tty = true
		}
	}
	err := a.run(ctx, args)
	if err == nil {
		return ExitOK
	}
	var ex *exitError
	if errors.As(err, &ex) && ex.msg == "" {
		return ex.code
	}
	code := exitCode(err)
	fmt.Fprintln(stderr, "baremetalctl:", err)
	if code == ExitUsage && !errors.As(err, &ex) {
		fmt.Fprintln(stderr, `run "baremetalctl help" for usage`)
	}
	return code
}

// exitError carries a chosen exit code; an empty msg means the command has
// already said everything (e.g. rollout status printed a failed rollout).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func usageErr(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// exitCode maps an error to the exit code scripts can rely on.
func exitCode(err error) int {
	var (
		ex *exitError
		ue *usageError
	)
	switch {
	case errors.As(err, &ex):
		return ex.code
	case errors.As(err, &ue):
		return ExitUsage
	case errors.Is(err, client.ErrNotFound):
		return ExitNotFound
	case errors.Is(err, client.ErrUnauthorized), errors.Is(err, client.ErrForbidden):
		return ExitAuth
	case errors.Is(err, client.ErrConflict), errors.Is(err, client.ErrValidation):
		return ExitRejected
	case errors.Is(err, context.DeadlineExceeded):
		return ExitPending
	case client.IsUnreachable(err):
		return ExitUnavailable
	}
	return ExitError
}

// command is one leaf of the command tree.
type command struct {
	// argNames are the positional arguments, as the usage message names them.
	argNames []string
	// optional is how many of the leading argNames may be left out.
	optional int
	flags    func(fs *flag.FlagSet, o *options)
	run      func(ctx context.Context, a *app, args []string) error
}

func (a *app) run(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(a.stdout, usage)
		if len(args) == 0 {
			return &exitError{code: ExitUsage}
		}
		return nil
	}
	// Global flags may come first; the command path is the leading words.
	var path []string
	cmds := commands()
	var cmd *command
	rest := args
	for len(rest) > 0 {
		if strings.HasPrefix(rest[0], "-") {
			// A global flag before the command: leave it for the command's
			// flag set, which holds the globals too.
			break
		}
		path = append(path, rest[0])
		rest = rest[1:]
		if c, ok := cmds[strings.Join(path, " ")]; ok {
			cmd = c
			break
		}
	}
	if cmd == nil {
		// Flags first, then the command: find the command after them.
		lead, words := splitLeadingFlags(args)
		if len(lead) > 0 && len(words) > 0 {
			return a.run(ctx, append(words, lead...))
		}
		if len(path) == 0 {
			return usageErr("no command given")
		}
		return usageErr("unknown command %q", strings.Join(path, " "))
	}
	name := strings.Join(path, " ")
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	a.g.register(fs)
	if cmd.flags != nil {
		cmd.flags(fs, &a.o)
	}
	pos, err := parseInterleaved(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(a.stdout, usage)
		return nil
	}
	if err != nil {
		return usageErr("%s: %v", name, err)
	}
	if len(pos) > len(cmd.argNames) || len(pos) < len(cmd.argNames)-cmd.optional {
		return usageErr("usage: baremetalctl %s %s", name, strings.Join(cmd.argNames, " "))
	}
	if a.g.output != "table" && a.g.output != "json" {
		return usageErr("-o must be table or json, not %q", a.g.output)
	}
	if a.client, err = a.newClient(); err != nil {
		return err
	}
	if a.g.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.g.timeout)
		defer cancel()
	}
	return cmd.run(ctx, a, pos)
}

// splitLeadingFlags separates global flags written before the command
// (with their values) from the words after them.
func splitLeadingFlags(args []string) (flags, words []string) {
	valued := map[string]bool{"endpoint": true, "token-file": true, "ca-cert": true, "output": true, "o": true, "timeout": true}
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		name := strings.TrimLeft(args[i], "-")
		flags = append(flags, args[i])
		if valued[name] && i+1 < len(args) {
			flags = append(flags, args[i+1])
			i++
		}
		i++
	}
	return flags, args[i:]
}

// parseInterleaved lets flags follow positional arguments
// (`machines show m1 -o json`), which the flag package alone stops at.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// newClient builds the client from flags, falling back to the provider's
// environment variables.
func (a *app) newClient() (*client.Client, error) {
	endpoint := a.g.endpoint
	if endpoint == "" {
		endpoint = a.env(EnvEndpoint)
	}
	if endpoint == "" {
		return nil, usageErr("no agent endpoint: set %s or --endpoint", EnvEndpoint)
	}
	token := a.env(EnvToken)
	if a.g.tokenFile != "" {
		t, err := readToken(a.g.tokenFile)
		if err != nil {
			return nil, &exitError{code: ExitUsage, msg: err.Error()}
		}
		token = t
	}
	if token == "" {
		return nil, usageErr("no API token: set %s or --token-file", EnvToken)
	}
	caPEM := a.env(EnvCACertPEM)
	if a.g.caCert != "" {
		data, err := os.ReadFile(a.g.caCert)
		if err != nil {
			return nil, &exitError{code: ExitUsage, msg: "--ca-cert: " + err.Error()}
		}
		caPEM = string(data)
	}
	insecure := a.g.insecure
	if v := a.env(EnvInsecure); v == "true" || v == "1" {
		insecure = true
	}
	// The client's retry notices are noise at a prompt unless asked for;
	// the final error says how many attempts were made.
	log := slog.New(slog.DiscardHandler)
	if a.g.verbose {
		log = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	c, err := client.New(client.Config{
		Logger:    log,
		Endpoint:  endpoint,
		Token:     token,
		CACertPEM: caPEM,
		Insecure:  insecure,
		UserAgent: "baremetalctl",
		// An operator at a prompt wants to hear about a down agent in
		// seconds, not after the provider's patient retries.
		MaxRetries:   2,
		RetryMaxWait: 2 * time.Second,
	})
	if err != nil {
		return nil, &exitError{code: ExitUsage, msg: err.Error()}
	}
	return c, nil
}

// readToken takes the first token line of a file in the agent's token file
// format, so the agent's own file works on the agent's host; a
// "readonly:" marker is dropped (the token is the same).
func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		return strings.TrimSpace(strings.TrimPrefix(line, "readonly:")), nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("--token-file %s: %w", path, err)
	}
	return "", fmt.Errorf("--token-file %s holds no token", path)
}

// commands is the command tree, keyed by the command path.
func commands() map[string]*command {
	return map[string]*command{
		"machines list":   {flags: machineFilterFlags, run: machinesList},
		"machines show":   {argNames: []string{"NAME"}, run: machinesShow},
		"machines events": {argNames: []string{"NAME"}, flags: eventsFlags, run: machinesEvents},
		"provision":       {argNames: []string{"NAME"}, flags: waitFlags, run: provision(false)},
		"reprovision":     {argNames: []string{"NAME"}, flags: waitFlags, run: provision(true)},
		"reboot":          {argNames: []string{"NAME"}, run: powerAction("reboot")},
		"power on":        {argNames: []string{"NAME"}, run: powerAction("on")},
		"power off":       {argNames: []string{"NAME"}, run: powerAction("off")},
		"power cycle":     {argNames: []string{"NAME"}, run: powerAction("cycle")},
		"delete":          {argNames: []string{"NAME"}, flags: deleteFlags, run: deleteMachine},
		"profiles list":   {run: profilesList},
		"profiles show":   {argNames: []string{"NAME"}, run: profilesShow},
		"templates list":  {argNames: []string{"[PROFILE]"}, optional: 1, run: templatesList},
		"templates show":  {argNames: []string{"[PROFILE]", "NAME"}, optional: 1, run: templatesShow},
		"clusters list":   {run: clustersList},
		"clusters show":   {argNames: []string{"NAME"}, run: clustersShow},
		"rollout status":  {argNames: []string{"CLUSTER|PROFILE"}, flags: rolloutFlags, run: rolloutStatus},
	}
}
