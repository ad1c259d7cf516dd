// Package report holds what every benchmark program under bench/ shares:
// the statistics of repeated runs, the description of the machine a run was
// measured on, and the rewriting of one marked section of BENCHMARKS.md, so
// each benchmark owns its section and leaves the others alone.
package report

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Median returns the median of xs (the mean of the middle two for an even
// count), or NaN for no values.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Percentile returns the p-th percentile (0 < p <= 100) of xs by the
// nearest-rank method, so it is always one of the observed values: with 200
// transfers p99 is the second slowest, never an interpolation. NaN for no
// values.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 || p <= 0 || p > 100 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[max(rank, 1)-1]
}

// Ratio returns x/best, NaN when either is unknown or best is not positive.
func Ratio(x, best float64) float64 {
	if math.IsNaN(x) || math.IsNaN(best) || best <= 0 {
		return math.NaN()
	}
	return x / best
}

// Best returns the largest of xs ignoring NaN, or NaN when none is known.
func Best(xs ...float64) float64 {
	b := math.NaN()
	for _, x := range xs {
		if !math.IsNaN(x) && (math.IsNaN(b) || x > b) {
			b = x
		}
	}
	return b
}

// F formats x with the given decimals, "n/a" for NaN.
func F(x float64, decimals int) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.*f", decimals, x)
}

// Markers returns the comment lines that delimit section name in
// BENCHMARKS.md.
func Markers(name string) (start, end string) {
	return "<!-- bench:" + name + ":start -->", "<!-- bench:" + name + ":end -->"
}

// ReplaceSection returns doc with the text between section name's markers
// replaced by body; a document without that section gets it appended. Text
// outside the markers is kept byte for byte. Markers out of order or
// repeated are an error rather than a guess, since a guess could delete
// another benchmark's results.
func ReplaceSection(doc []byte, name string, body string) ([]byte, error) {
	start, end := Markers(name)
	body = strings.TrimRight(body, "\n") + "\n"
	si := bytes.Index(doc, []byte(start))
	ei := bytes.Index(doc, []byte(end))
	switch {
	case si < 0 && ei < 0:
		var out bytes.Buffer
		out.Write(doc)
		if len(doc) > 0 && !bytes.HasSuffix(doc, []byte("\n")) {
			out.WriteByte('\n')
		}
		if len(doc) > 0 {
			out.WriteByte('\n')
		}
		fmt.Fprintf(&out, "%s\n%s%s\n", start, body, end)
		return out.Bytes(), nil
	case si < 0 || ei < 0 || ei < si:
		return nil, fmt.Errorf("BENCHMARKS.md: markers for section %q are incomplete or out of order", name)
	}
	if bytes.Count(doc, []byte(start)) > 1 || bytes.Count(doc, []byte(end)) > 1 {
		return nil, fmt.Errorf("BENCHMARKS.md: markers for section %q appear more than once", name)
	}
	var out bytes.Buffer
	out.Write(doc[:si+len(start)])
	out.WriteByte('\n')
	out.WriteString(body)
	out.Write(doc[ei:])
	return out.Bytes(), nil
}

// WriteSection rewrites section name of the file at path (creating the file
// with a title when it does not exist).
func WriteSection(path, name, body string) error {
	doc, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		doc = []byte("# Benchmarks\n\nWritten by the programs under bench/ (`make bench`, `make bench-quick`); each section is rewritten by its own program between its markers.\n")
	} else if err != nil {
		return err
	}
	out, err := ReplaceSection(doc, name, body)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Machine describes the host a run was measured on, for the section header.
func Machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "unknown memory"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			var kb int64
			if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
				mem = fmt.Sprintf("%.1f GiB RAM", float64(kb)/(1<<20))
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s), %s, %s/%s, %s", runtime.NumCPU(), model, mem, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

// Header is the opening of a section that program (its package path, e.g.
// ./bench/cmd/bootbench) writes: when and where it was measured, the
// command that reproduces it, quoted for a POSIX shell, and any extra
// lines (each ending in a Markdown line break) and note.
func Header(program, note string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %s.  \n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), Machine())
	args := []string{"go", "run", program}
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " \t'\"$`\\|&;<>()*?") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		args = append(args, a)
	}
	fmt.Fprintf(&b, "Command: `%s`  \n", strings.Join(args, " "))
	for _, l := range extra {
		b.WriteString(l)
	}
	if note != "" {
		fmt.Fprintf(&b, "**Note:** %s\n", note)
	}
	b.WriteString("\n")
	return b.String()
}
