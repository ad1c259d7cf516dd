package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// keySize is the AES-256 key length; the key file holds exactly these bytes.
const keySize = 32

// sealer encrypts secrets with AES-256-GCM. The additional data binds a
// ciphertext to the object and field it was written for, so a blob copied
// into another machine's record (or into another field) fails to open
// instead of leaking one machine's password to another's BMC session.
type sealer struct {
	aead cipher.AEAD
}

func newSealer(key []byte) (*sealer, error) {
	if len(key) != keySize {
		return nil, fmt.Errorf("key is %d bytes, want %d", len(key), keySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

// seal returns nonce||ciphertext. A fresh random nonce per write means the
// same password written twice gives unrelated blobs.
func (s *sealer) seal(plaintext, ad string) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return nil, fmt.Errorf("reading random nonce: %w", err)
	}
	return s.aead.Seal(nonce, nonce, []byte(plaintext), []byte(ad)), nil
}

var errUnseal = errors.New("cannot decrypt (wrong key file, or the record was altered)")

func (s *sealer) open(blob []byte, ad string) (string, error) {
	n := s.aead.NonceSize()
	if len(blob) < n+s.aead.Overhead() {
		return "", errUnseal
	}
	pt, err := s.aead.Open(nil, blob[:n], blob[n:], []byte(ad))
	if err != nil {
		return "", errUnseal
	}
	return string(pt), nil
}

// loadKey reads the key file, refusing one that group or others can read or
// write: anyone who can read it can decrypt every BMC password in the store.
// A missing file is reported with fs.ErrNotExist so the caller can decide
// whether creating a new key is safe.
func loadKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("key file %s has mode %04o, which lets group or others access it; refusing to use it (run: chmod 600 %s)", path, perm, path)
	}
	key, err := io.ReadAll(io.LimitReader(f, keySize+1))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if len(key) != keySize {
		return nil, fmt.Errorf("key file %s holds %d bytes, want exactly %d random bytes", path, len(key), keySize)
	}
	return key, nil
}

// createKey writes a new random key with mode 0600. O_EXCL makes two agents
// racing on first start fail instead of overwriting each other's key.
func createKey(path string) ([]byte, error) {
	key := make([]byte, keySize)
	if _, err := io.ReadFull(rand.Reader, key); err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating key file: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("writing key file %s: %w", path, err)
	}
	// The key must be on disk before any secret sealed with it is.
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("syncing key file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("closing key file %s: %w", path, err)
	}
	return key, nil
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
