package model

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCallbackReportValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		report CallbackReport
		ok     bool
	}{
		{"empty", CallbackReport{}, true},
		{"v4, v6 and CIDR", CallbackReport{Addresses: []string{"10.0.2.15", "fd00::1", "10.0.2.16/24"}, Hostname: "n1.lab.example."}, true},
		{"a name", CallbackReport{Addresses: []string{"cp.example"}}, false},
		{"injection", CallbackReport{Addresses: []string{"10.0.0.1 && reboot"}}, false},
		{"zone", CallbackReport{Addresses: []string{"fe80::1%eth0"}}, false},
		{"hostname with a space", CallbackReport{Hostname: "a b"}, false},
		{"hostname label too long", CallbackReport{Hostname: strings.Repeat("a", 64)}, false},
		{"hostname underscore", CallbackReport{Hostname: "a_b"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.report.Validate()
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrBadReport)
		})
	}
}

// FuzzCallbackReportValidate: whatever an installer posts, an accepted
// report's addresses come out as canonical IP addresses and its hostname
// holds only host-name characters.
func FuzzCallbackReportValidate(f *testing.F) {
	for _, s := range [][2]string{{"10.0.2.15", "m1"}, {"10.0.0.0/8", "a.b"}, {"::1", ""}, {"1.2.3.4 x", "a b"}, {"{{.}}", "${x}"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, addr, host string) {
		r := CallbackReport{Addresses: []string{addr}, Hostname: host}
		if r.Validate() != nil {
			return
		}
		ip, err := ReportedAddress(addr)
		require.NoError(t, err)
		parsed, err := netip.ParseAddr(ip)
		require.NoError(t, err)
		require.Equal(t, parsed.String(), ip)
		hostRune := func(r rune) bool {
			return r == '.' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		}
		require.False(t, strings.ContainsFunc(host, func(r rune) bool { return !hostRune(r) }), "hostname %q", host)
	})
}
