package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
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

// cellRunes is the widest a free-text table cell gets.
const cellRunes = 60

// truncate shortens s to cellRunes runes for a table cell.
func truncate(s string) string {
	r := []rune(s)
	if len(r) <= cellRunes {
		return s
	}
	return string(r[:cellRunes-1]) + "…"
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
