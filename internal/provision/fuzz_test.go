package provision

import (
	"net"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzCallbackInput feeds hostile installer reports (and boot-edge signal
// data) through the sanitisers that stand between them and last_error,
// events and the API.
func FuzzCallbackInput(f *testing.F) {
	f.Add("10.0.2.15", "installing...\nerror: disk not found\x1b[31m", "host-1")
	f.Add("fe80::1/64", strings.Repeat("A", 5000), "\x00\xff")
	f.Add("999.1.1.1", "\u202etxt.exe", "token=abc")
	f.Fuzz(func(t *testing.T, addr, logTail, label string) {
		for _, a := range cleanAddresses([]string{addr, addr}) {
			if net.ParseIP(a) == nil {
				if _, _, err := net.ParseCIDR(a); err != nil {
					t.Fatalf("kept address %q", a)
				}
			}
		}
		tail := cleanLogTail(logTail)
		if len(tail) > maxLogTail+len("…") || !utf8.ValidString(tail) {
			t.Fatalf("log tail of %d bytes, valid %v", len(tail), utf8.ValidString(tail))
		}
		for _, c := range tail {
			if !unicode.IsPrint(c) {
				t.Fatalf("log tail keeps %U", c)
			}
		}
		d := cleanData(map[string]string{"remote": label, "Token": label, "x_password": label})
		if _, ok := d["Token"]; ok || d["x_password"] != "" {
			t.Fatal("credential-like key kept")
		}
		if v := d["remote"]; len(v) > 256+len("…") || !utf8.ValidString(v) || strings.ContainsFunc(v, func(c rune) bool { return !unicode.IsPrint(c) }) {
			t.Fatalf("signal data value %q", v)
		}
	})
}
