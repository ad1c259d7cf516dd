package boot

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// Escaping for the formats install templates emit. Each function makes a
// value one inert token of its format, or refuses it: a refused value is
// never rendered, and the render error names the param that carried it
// (see paramRefusal), so the API can answer 422 before any machine boots.
//
// Why each format needs its own function:
//   - kickstart is read line by line and each command line is split with
//     Python's shlex (posix); a line break starts a new command or a
//     section (%pre), a space starts a new argument.
//   - debconf (preseed) values run to the end of the line, and a trailing
//     backslash joins the next line.
//   - YAML forbids DEL and C1 controls even inside quoted strings, and
//     JSON allows them raw, so JSON that is also YAML must escape them.
//   - the kernel splits its command line at spaces outside double quotes
//     and has no escape for a double quote.
//   - POSIX shell: single quotes end only at a single quote.

// lineBreakingRune reports runes that some reader of the rendered text
// takes as the end of a line or refuses outright: C0 and C1 controls, DEL,
// and the Unicode line and paragraph separators (Python's str.splitlines,
// which pykickstart uses, splits at U+0085, U+2028 and U+2029).
func lineBreakingRune(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == 0x2028 || r == 0x2029
}

// oneLineProblem says why v cannot be rendered into one line ("" if it can).
func oneLineProblem(v string) string {
	if !utf8.ValidString(v) {
		return "is not valid UTF-8"
	}
	for _, r := range v {
		if r == '\n' || r == '\r' || r == 0x2028 || r == 0x2029 || r == 0x85 {
			return "contains a line break"
		}
		if lineBreakingRune(r) {
			return fmt.Sprintf("contains the control character U+%04X", r)
		}
	}
	return ""
}

// errRefused marks a value an escaping function refused; the message says
// why without repeating the value (it may be a secret).
type errRefused struct{ why, format string }

func (e *errRefused) Error() string { return fmt.Sprintf("%s; %s", e.why, e.format) }

func refuse(v, format string) error {
	if why := oneLineProblem(v); why != "" {
		return &errRefused{why: why, format: format}
	}
	return nil
}

// shellQuote makes v one word of a POSIX shell command line.
func shellQuote(v string) (string, error) {
	if err := refuse(v, "a shell word here must be one line"); err != nil {
		return "", err
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'", nil
}

// ksQuote makes v one argument of a kickstart command: a double-quoted
// shlex string, in which only '\' and '"' need a backslash.
func ksQuote(v string) (string, error) {
	if err := refuse(v, "kickstart commands are one line"); err != nil {
		return "", err
	}
	if v != "" && strings.TrimSpace(v) == "" {
		// pykickstart refuses an option whose value is only blanks
		// (ignoredisk --only-use=" "), so the installer would stop.
		return "", &errRefused{why: "is only whitespace", format: "which no kickstart option takes"}
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(v) + `"`, nil
}

// preseedValue is v as the value of a debconf selection line.
func preseedValue(v string) (string, error) {
	if err := refuse(v, "preseed values are one line"); err != nil {
		return "", err
	}
	if strings.HasSuffix(v, `\`) {
		return "", &errRefused{why: "ends with a backslash", format: "which would join the next preseed line to it"}
	}
	return v, nil
}

// kernelArg makes v one kernel command-line word, double-quoted when it
// holds a space (the kernel's only quoting).
func kernelArg(v string) (string, error) {
	if err := refuse(v, "the kernel command line is one line"); err != nil {
		return "", err
	}
	if strings.Contains(v, `"`) {
		return "", &errRefused{why: "contains a double quote", format: "which the kernel command line cannot escape"}
	}
	if v == "" || strings.ContainsAny(v, " \t") {
		return `"` + v + `"`, nil
	}
	return v, nil
}

// toJSON encodes v as JSON that is also a valid YAML flow value: DEL, C1
// controls, the non-characters U+FFFE/U+FFFF and the byte-order mark,
// which JSON carries raw and YAML refuses (or strips), become \u escapes. They can only occur inside JSON
// strings, so escaping them there keeps the JSON's meaning.
func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	s := string(b)
	if !strings.ContainsFunc(s, yamlUnsafe) {
		return s, nil
	}
	var out strings.Builder
	for _, r := range s {
		if yamlUnsafe(r) {
			fmt.Fprintf(&out, `\u%04x`, r)
			continue
		}
		out.WriteRune(r)
	}
	return out.String(), nil
}

func yamlUnsafe(r rune) bool {
	return (r >= 0x7f && r <= 0x9f) || r == 0xfffe || r == 0xffff || r == 0xfeff
}

// paramRefusal turns an escaping function's refusal into an error naming
// the params (or secret params) that hold the value, never the value
// itself.
func paramRefusal(params map[string]string, secrets []string, v string, err error) error {
	var ref *errRefused
	if !errors.As(err, &ref) {
		return err
	}
	var names []string
	for k, pv := range params {
		if pv == v {
			names = append(names, fmt.Sprintf("param %q", k))
		}
	}
	for _, k := range secrets {
		names = append(names, fmt.Sprintf("secret %q", k))
	}
	sort.Strings(names)
	if len(names) == 0 {
		return fmt.Errorf("a value %w", err)
	}
	return fmt.Errorf("%s %w", strings.Join(names, ", "), err)
}
