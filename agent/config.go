package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/agentd"
)

// serveConfig is `serve`'s configuration: the agent's, and how it logs.
// Every setting is a flag, an environment variable
// BAREMETAL_AGENT_<FLAG_IN_UPPER_SNAKE> and a key of the --config YAML file
// (the flag's name, e.g. `data-dir: /srv/agent`). Precedence: flag >
// environment > file > default.
type serveConfig struct {
	agentd.Config
	LogJSON  bool
	LogLevel slog.Level
}

// EnvPrefix prefixes every configuration environment variable.
const EnvPrefix = "BAREMETAL_AGENT_"

type setting struct {
	name, def, usage string
	set              func(c *serveConfig, v string) error
}

// settings are the agent's settings and the two of its log.
func settings() []setting {
	out := []setting{
		{"log-format", "text", "log format: text or json", func(c *serveConfig, v string) error {
			if v != "text" && v != "json" {
				return fmt.Errorf("--log-format %q: want text or json", v)
			}
			c.LogJSON = v == "json"
			return nil
		}},
		{"log-level", "info", "log level: debug, info, warn or error", func(c *serveConfig, v string) error {
			if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", v)
			}
			return nil
		}},
	}
	for _, s := range agentd.Settings() {
		out = append(out, setting{s.Name, s.Default, s.Usage, func(c *serveConfig, v string) error { return s.Set(&c.Config, v) }})
	}
	return out
}

func envName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// loadConfig resolves the serve configuration from args, the environment
// (getenv) and the --config file.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (serveConfig, error) {
	options := settings()
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
		return serveConfig{}, err
	}
	if fs.NArg() > 0 {
		return serveConfig{}, fmt.Errorf("serve takes no arguments, got %q", fs.Args())
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
		if file, err = readConfigFile(path, options); err != nil {
			return serveConfig{}, err
		}
	}
	cfg := serveConfig{Config: agentd.Config{Version: version}}
	var errs []error
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
		errs = append(errs, o.set(&cfg, v))
	}
	errs = append(errs, cfg.Validate())
	return cfg, errors.Join(errs...)
}

func readConfigFile(path string, options []setting) (map[string]string, error) {
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

func newLogger(cfg serveConfig, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogJSON {
		return slog.New(newLimitedHandler(slog.NewJSONHandler(w, opts)))
	}
	return slog.New(newLimitedHandler(slog.NewTextHandler(w, opts)))
}
