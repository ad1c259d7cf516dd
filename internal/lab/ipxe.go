package lab

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"strings"
)

// IPXECommand is one command of an iPXE script, or a label.
type IPXECommand struct {
	Line  int    // 1-based line number
	Label string // set for ":label" lines, which have no Name
	Name  string
	Args  []string
}

// ParseIPXEScript splits an iPXE script into commands. Of `a || b` only a
// is kept (the simulated machine's commands succeed or abort the boot);
// `a && b` gives both.
func ParseIPXEScript(script string) ([]IPXECommand, error) {
	lines := strings.Split(strings.ReplaceAll(script, "\r\n", "\n"), "\n")
	var cmds []IPXECommand
	sawHeader := false
	for i, line := range lines {
		line = strings.TrimSpace(line)
		if !sawHeader {
			if line == "" {
				continue
			}
			if !strings.HasPrefix(line, "#!ipxe") && !strings.HasPrefix(line, "#!gpxe") {
				return nil, errors.New("not an iPXE script: the first line must be #!ipxe")
			}
			sawHeader = true
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if label, ok := strings.CutPrefix(line, ":"); ok {
			fields := strings.Fields(label)
			if len(fields) == 0 {
				return nil, fmt.Errorf("line %d: empty label", i+1)
			}
			cmds = append(cmds, IPXECommand{Line: i + 1, Label: fields[0]})
			continue
		}
		if before, _, ok := strings.Cut(line, "||"); ok {
			line = before
		}
		for part := range strings.SplitSeq(line, "&&") {
			fields := strings.Fields(part)
			if len(fields) == 0 {
				continue
			}
			cmds = append(cmds, IPXECommand{Line: i + 1, Name: fields[0], Args: fields[1:]})
		}
	}
	if !sawHeader {
		return nil, errors.New("not an iPXE script: empty")
	}
	return cmds, nil
}

// BootPlan is what an iPXE script makes the machine do next.
type BootPlan struct {
	// Chain is the absolute URL of a script to run instead.
	Chain string
	// Exit means boot from the local disk.
	Exit bool

	Kernel     string   // absolute URL
	KernelArgs []string // the kernel command line, word by word
	Initrds    []string // absolute URLs
}

// maxSteps bounds a script's execution: `goto` loops end in an error.
const maxSteps = 10000

// PlanIPXEScript runs script the way iPXE would, without fetching anything:
// it expands ${var} settings (vars seeds them, e.g. mac), follows goto,
// resolves relative URLs against base and stops at the first command that
// leaves the script (boot, chain, exit, sanboot).
func PlanIPXEScript(script string, base *url.URL, vars map[string]string) (BootPlan, error) {
	cmds, err := ParseIPXEScript(script)
	if err != nil {
		return BootPlan{}, err
	}
	settings := maps.Clone(vars)
	if settings == nil {
		settings = map[string]string{}
	}
	labels := map[string]int{}
	for i, c := range cmds {
		if c.Label != "" {
			if _, dup := labels[c.Label]; !dup {
				labels[c.Label] = i
			}
		}
	}
	resolve := func(c IPXECommand, raw string) (string, error) {
		u, err := url.Parse(raw)
		if err != nil {
			return "", fmt.Errorf("line %d: %s: bad URL: %w", c.Line, c.Name, err)
		}
		if base != nil {
			u = base.ResolveReference(u)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return "", fmt.Errorf("line %d: %s: %q is not an http(s) URL the simulated machine can fetch", c.Line, c.Name, redact(u.String()))
		}
		// url.Parse accepts some hosts that its own String output cannot
		// be parsed back from (a network-path reference "//::" becomes
		// "http://::"); the machine fetches the string, so it must parse.
		resolved := u.String()
		if _, err := url.Parse(resolved); err != nil || u.Host == "" {
			return "", fmt.Errorf("line %d: %s: %q has no usable host", c.Line, c.Name, redact(resolved))
		}
		return resolved, nil
	}

	var plan BootPlan
	for pc, steps := 0, 0; pc < len(cmds); pc, steps = pc+1, steps+1 {
		if steps >= maxSteps {
			return BootPlan{}, fmt.Errorf("script runs more than %d commands (a goto loop?)", maxSteps)
		}
		c := cmds[pc]
		if c.Label != "" {
			continue
		}
		args := make([]string, len(c.Args))
		for i, a := range c.Args {
			args[i] = expand(a, settings)
		}
		switch c.Name {
		case "set", "setx":
			if len(args) == 0 {
				return BootPlan{}, fmt.Errorf("line %d: set without a setting name", c.Line)
			}
			settings[args[0]] = strings.Join(args[1:], " ")
		case "clear":
			if len(args) > 0 {
				delete(settings, args[0])
			}
		case "goto":
			if len(args) == 0 {
				return BootPlan{}, fmt.Errorf("line %d: goto without a label", c.Line)
			}
			to, ok := labels[args[0]]
			if !ok {
				return BootPlan{}, fmt.Errorf("line %d: goto %s: no such label", c.Line, args[0])
			}
			pc = to
		case "kernel", "imgselect", "imgload":
			raw, rest := imageArgs(args)
			if raw == "" {
				return BootPlan{}, fmt.Errorf("line %d: %s without a URL", c.Line, c.Name)
			}
			u, err := resolve(c, raw)
			if err != nil {
				return BootPlan{}, err
			}
			plan.Kernel, plan.KernelArgs = u, rest
		case "initrd", "module", "imgfetch":
			raw, _ := imageArgs(args)
			if raw == "" {
				return BootPlan{}, fmt.Errorf("line %d: %s without a URL", c.Line, c.Name)
			}
			u, err := resolve(c, raw)
			if err != nil {
				return BootPlan{}, err
			}
			plan.Initrds = append(plan.Initrds, u)
		case "chain", "imgexec", "boot":
			raw, _ := imageArgs(args)
			if raw == "" { // boot the selected kernel
				if plan.Kernel == "" {
					return BootPlan{}, fmt.Errorf("line %d: %s without a kernel loaded", c.Line, c.Name)
				}
				return plan, nil
			}
			u, err := resolve(c, raw)
			if err != nil {
				return BootPlan{}, err
			}
			return BootPlan{Chain: u}, nil
		case "exit", "sanboot":
			return BootPlan{Exit: true}, nil
		case "reboot", "poweroff", "shell":
			return BootPlan{}, fmt.Errorf("line %d: the script runs %q instead of booting", c.Line, c.Name)
		}
	}
	return BootPlan{}, errors.New("the script ended without booting anything")
}

// imageArgs skips an image command's options and returns its URL and the
// words after it.
func imageArgs(args []string) (string, []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--name" || a == "-n" || a == "--timeout" || a == "-t":
			i++ // the option's value
		case strings.HasPrefix(a, "-"):
		default:
			return a, args[i+1:]
		}
	}
	return "", nil
}

// expand replaces ${name} and ${name:type} with settings; unset ones expand
// to nothing, as in iPXE. The hexhyp type writes a MAC with hyphens.
func expand(s string, settings map[string]string) string {
	if !strings.Contains(s, "${") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		name, typ, _ := strings.Cut(s[i+2:i+j], ":")
		v := settings[name]
		if typ == "hexhyp" {
			v = strings.ReplaceAll(v, ":", "-")
		}
		b.WriteString(v)
		s = s[i+j+1:]
	}
}

// KernelArgs is the installer convention on the kernel command line.
type KernelArgs struct {
	URL       string   // baremetal.url=
	Machine   string   // baremetal.machine=
	Token     string   // baremetal.token=
	Templates []string // baremetal.templates=a,b
	Deploy    bool     // baremetal.mode=deploy: the agent's deploy ramdisk
	Clean     bool     // baremetal.mode=clean: the same ramdisk removing its config drive
}

// ParseKernelArgs reads the baremetal.* words of a kernel command line.
func ParseKernelArgs(words []string) KernelArgs {
	var k KernelArgs
	for _, w := range words {
		key, val, ok := strings.Cut(w, "=")
		if !ok {
			continue
		}
		val = strings.Trim(val, `"'`)
		switch key {
		case "baremetal.url":
			k.URL = val
		case "baremetal.machine":
			k.Machine = val
		case "baremetal.token":
			k.Token = val
		case "baremetal.mode":
			k.Deploy, k.Clean = val == "deploy", val == "clean"
		case "baremetal.templates":
			k.Templates = nil
			for t := range strings.SplitSeq(val, ",") {
				if t = strings.TrimSpace(t); t != "" {
					k.Templates = append(k.Templates, t)
				}
			}
		}
	}
	return k
}
