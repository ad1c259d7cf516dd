package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// quietTLSServer is httptest.NewTLSServer without the handshake-failure
// lines the tests provoke on purpose.
func quietTLSServer(h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	return srv
}

func TestTLS(t *testing.T) {
	rec := &recorder{respond: func(int, *http.Request, []byte) (int, http.Header, any) {
		return 200, nil, api.Info{Version: "1.0.0"}
	}}
	srv := quietTLSServer(rec)
	defer srv.Close()
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))

	// httptest servers all share one certificate, so the untrusted CA is made here.
	otherPEM := selfSignedPEM(t)

	tests := []struct {
		name     string
		caPEM    string
		insecure bool
		wantErr  string // "" = the call works
	}{
		{"agent CA trusted", caPEM, false, ""},
		{"CA bundle with leading text", "agent CA:\n" + otherPEM + caPEM, false, ""},
		{"insecure", "", true, ""},
		{"system roots only", "", false, "ca_cert_pem"},
		{"wrong CA", otherPEM, false, "ca_cert_pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, srv.URL, nil, func(cfg *Config) { cfg.CACertPEM, cfg.Insecure = tt.caPEM, tt.insecure })
			before := len(rec.requests())
			info, err := c.Info(context.Background())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Info: %v", err)
				}
				if info.Version != "1.0.0" {
					t.Errorf("version %q", info.Version)
				}
				return
			}
			if err == nil {
				t.Fatal("untrusted certificate accepted")
			}
			for _, want := range []string{tt.wantErr, "insecure", "certificate", "agent " + srv.URL} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if strings.Contains(err.Error(), testToken) {
				t.Error("token in error")
			}
			if n := len(rec.requests()) - before; n != 0 {
				t.Errorf("%d requests reached the server over an untrusted connection", n)
			}
		})
	}
}

func selfSignedPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "other CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestTLSAgainstPlainHTTP(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	c := newTestClient(t, "https://"+srv.Listener.Addr().String(), nil, nil)
	_, err := c.Info(context.Background())
	if err == nil || !strings.Contains(err.Error(), "does not speak TLS") {
		t.Fatalf("error %v, want the plain-HTTP hint", err)
	}
}

func TestPlainHTTPAgainstTLS(t *testing.T) {
	srv := quietTLSServer(http.NotFoundHandler())
	defer srv.Close()
	c := newTestClient(t, "http://"+srv.Listener.Addr().String(), nil, nil)
	_, err := c.Info(context.Background())
	// Go's TLS server answers a plain request with a 400 and this text.
	if !errors.Is(err, ErrValidation) || !strings.Contains(err.Error(), "HTTP request to an HTTPS server") {
		t.Fatalf("error %v, want the server's explanation", err)
	}
}

func TestCACertPEMValidation(t *testing.T) {
	srv := quietTLSServer(http.NotFoundHandler())
	defer srv.Close()
	good := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	tests := []struct {
		name, pem, wantErr string
	}{
		{"garbage", "not a certificate", "no PEM \"CERTIFICATE\" block"},
		{"key only", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "no PEM \"CERTIFICATE\" block"},
		{"corrupt certificate", string(good) + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "ca_cert_pem: certificate 2"},
		{"valid", string(good), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Config{Endpoint: "https://agent:8443", CACertPEM: tt.pem})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}
