package agentd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGeneratedCertificateLeafAndKeyMode: the generated certificate is a
// leaf that cannot sign others; one generated as a CA by an older agent is
// replaced; a key file readable by others stops the start and stays as it
// was.
func TestGeneratedCertificateLeafAndKeyMode(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	cfg := Config{DataDir: dir}
	const apiAddr = "127.0.0.1:8443"
	keyPath, certPath := filepath.Join(dir, keyFile), filepath.Join(dir, CertFile)

	// An older agent's CA certificate covering the same names.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "old"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(certLifetime), KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true, IsCA: true, DNSNames: certHosts(apiAddr)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	require.NoError(t, os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))

	c, err := apiCertificate(cfg, apiAddr, log)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	require.NoError(t, err)
	require.False(t, leaf.IsCA, "the CA certificate was kept, or a new CA made")
	require.Zero(t, leaf.KeyUsage&x509.KeyUsageCertSign)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost"})
	require.NoError(t, err, "a client trusting the certificate itself (ca_cert_pem) must accept it")

	require.NoError(t, os.Chmod(keyPath, 0o644))
	before, err := os.ReadFile(keyPath)
	require.NoError(t, err)
	_, err = apiCertificate(cfg, apiAddr, log)
	require.ErrorContains(t, err, "chmod 600 "+keyPath)
	after, err := os.ReadFile(keyPath)
	require.NoError(t, err)
	require.Equal(t, before, after, "the key file was replaced")
}

func TestGeneratedCertificate(t *testing.T) {
	dir := t.TempDir()
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg := Config{DataDir: dir}
	c1, err := apiCertificate(cfg, "192.0.2.7:8443", log)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(c1.Certificate[0])
	require.NoError(t, err)
	for _, h := range []string{"localhost", "127.0.0.1", "::1", "192.0.2.7"} {
		assert.NoError(t, leaf.VerifyHostname(h), "certificate does not cover %s", h)
	}
	fp := fingerprint(c1.Certificate[0])
	assert.Contains(t, logs.String(), fp, "fingerprint not logged")
	c2, err := apiCertificate(cfg, "192.0.2.7:8443", log)
	require.NoError(t, err)
	assert.Equal(t, fp, fingerprint(c2.Certificate[0]), "the certificate was not reused")
	// A new API address the certificate does not cover makes a new one.
	c3, err := apiCertificate(cfg, "192.0.2.8:8443", log)
	require.NoError(t, err)
	assert.NotEqual(t, fp, fingerprint(c3.Certificate[0]), "a certificate that does not cover the API address was reused")
	// An exposed key is refused rather than silently used or replaced.
	require.NoError(t, os.Chmod(filepath.Join(dir, keyFile), 0o644))
	_, err = loadGenerated(filepath.Join(dir, CertFile), filepath.Join(dir, keyFile), nil)
	assert.ErrorContains(t, err, "chmod 600")
}
