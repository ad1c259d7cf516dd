package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

func (a *app) json() bool { return a.g.output == "json" }

// writeJSON prints v indented; one document per command, or one compact
// line per update when a command streams (--follow, --watch), so scripts
// can read it line by line.
func writeJSON(w io.Writer, v any, compact bool) error {
	var (
		data []byte
		err  error
	)
	if compact {
		data, err = json.Marshal(v)
	} else {
		data, err = json.MarshalIndent(v, "", "  ")
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

// table writes aligned columns; every cell is made safe for a terminal.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		c = safe(c)
		if c == "" {
			c = "-"
		}
		cells[i] = c
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// safe strips control characters, so text from the agent (error messages,
// installer log tails, names) cannot move the cursor or recolour the
// operator's terminal, and keeps a cell on one line.
func safe(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
}

// truncate shortens s to n runes for a table cell.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// ago renders a time as an age, which is what an operator scanning a
// table wants; -o json keeps the timestamp.
func ago(t time.Time, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// kv prints "key: value" lines for show commands.
type kv struct {
	tw *tabwriter.Writer
}

func newKV(w io.Writer) *kv { return &kv{tw: tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)} }

func (k *kv) add(key, value string) {
	if value == "" {
		return
	}
	fmt.Fprintf(k.tw, "%s:\t%s\n", key, safe(value))
}

func (k *kv) flush() error { return k.tw.Flush() }
