package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Files of the generated certificate in the data dir.
const (
	generatedCertFile = "api-cert.pem"
	generatedKeyFile  = "api-key.pem"
	certLifetime      = 3 * 365 * 24 * time.Hour
	// certRenewBefore regenerates a self-signed certificate this close to
	// its expiry, so a long-running site never meets an expired one at start.
	certRenewBefore = 30 * 24 * time.Hour
)

// apiCertificate loads the configured certificate, or the one generated in
// the data dir on an earlier start, or generates one. It logs the SHA-256
// fingerprint so an operator can pin or verify it.
func apiCertificate(cfg Config, log *slog.Logger) (tls.Certificate, error) {
	if cfg.TLSCert != "" {
		if err := checkKeyFileMode(cfg.TLSKey); err != nil {
			return tls.Certificate{}, err
		}
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("loading --tls-cert/--tls-key: %w", err)
		}
		log.Info("api certificate", "source", cfg.TLSCert, "sha256", fingerprint(cert.Certificate[0]))
		return cert, nil
	}
	certPath := filepath.Join(cfg.DataDir, generatedCertFile)
	keyPath := filepath.Join(cfg.DataDir, generatedKeyFile)
	hosts := certHosts(cfg.APIAddr)
	cert, err := loadGenerated(certPath, keyPath, hosts)
	if err == nil {
		log.Info("api certificate (self-signed, reused)", "path", certPath, "sha256", fingerprint(cert.Certificate[0]))
		return cert, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		log.Warn("generating a new self-signed api certificate", "path", certPath, "reason", err)
	}
	cert, err = generateCert(certPath, keyPath, hosts)
	if err != nil {
		return tls.Certificate{}, err
	}
	log.Info("api certificate (self-signed, generated)", "path", certPath, "sha256", fingerprint(cert.Certificate[0]),
		"hosts", strings.Join(hosts, ","))
	return cert, nil
}

func checkKeyFileMode(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("--tls-key: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("TLS key %s has mode %04o and is readable by group or others; run: chmod 600 %s", path, perm, path)
	}
	return nil
}

// certHosts are the names the generated certificate covers.
func certHosts(apiAddr string) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	if host, _, err := net.SplitHostPort(apiAddr); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			hosts = append(hosts, ip.String())
		}
	}
	slices.Sort(hosts)
	return slices.Compact(hosts)
}

func loadGenerated(certPath, keyPath string, hosts []string) (tls.Certificate, error) {
	if _, err := os.Stat(certPath); err != nil {
		return tls.Certificate{}, err
	}
	if err := checkKeyFileMode(keyPath); err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return tls.Certificate{}, err
	}
	if time.Until(leaf.NotAfter) < certRenewBefore {
		return tls.Certificate{}, fmt.Errorf("certificate expires %s", leaf.NotAfter.Format(time.DateOnly))
	}
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return tls.Certificate{}, fmt.Errorf("certificate does not cover %s", h)
		}
	}
	return cert, nil
}

func generateCert(certPath, keyPath string, hosts []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "baremetal-agent", Organization: []string{"baremetal-agent self-signed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		// Self-signed and its own CA, so clients can trust it as a CA bundle.
		IsCA: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// writeFileAtomic writes via a temporary file and rename, so a crash never
// leaves a half-written key or certificate behind.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// fingerprint is the certificate's SHA-256 in the colon form openssl prints.
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}
