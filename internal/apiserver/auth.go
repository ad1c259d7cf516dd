package apiserver

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"io"
	"net/http"
	"os"
	"strings"
)

// ReadOnlyPrefix marks a token-file line as a read-only token.
const ReadOnlyPrefix = "readonly:"

// MinTokenLength is the shortest token accepted, so a guessable word never
// guards the API. `openssl rand -hex 32` makes a good one.
const MinTokenLength = 16

// TokenSet holds the API bearer tokens.
//
// The token file has one token per line. Blank lines and lines starting
// with '#' are ignored, surrounding whitespace is trimmed. A line of the form
// "readonly:<token>" is a read-only token: it may GET (and HEAD) but every
// other method gets 403. Example:
//
//	# terraform in CI
//	3f1c0e4b9a7d2e5f8a6b1c0d9e8f7a6b
//	# dashboards
//	readonly:9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d
//
// The file must not be readable by group or others (chmod 600).
type TokenSet struct {
	tokens []tokenEntry
}

type tokenEntry struct {
	// Only the digest is kept: comparing fixed-size digests hides the
	// tokens' lengths from timing.
	digest   [sha256.Size]byte
	readOnly bool
}

// NewTokenSet builds a TokenSet from read-write and read-only tokens.
func NewTokenSet(readWrite, readOnly []string) (*TokenSet, error) {
	ts := &TokenSet{}
	for i, t := range readWrite {
		if err := ts.add(t, false); err != nil {
			return nil, fmt.Errorf("read-write token %d: %w", i+1, err)
		}
	}
	for i, t := range readOnly {
		if err := ts.add(t, true); err != nil {
			return nil, fmt.Errorf("read-only token %d: %w", i+1, err)
		}
	}
	if len(ts.tokens) == 0 {
		return nil, errors.New("no API tokens given")
	}
	return ts, nil
}

func (ts *TokenSet) add(tok string, readOnly bool) error {
	if len(tok) < MinTokenLength {
		return fmt.Errorf("token is shorter than %d characters (generate one with `openssl rand -hex 32`)", MinTokenLength)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return errors.New("token contains whitespace")
	}
	ts.tokens = append(ts.tokens, tokenEntry{digest: sha256.Sum256([]byte(tok)), readOnly: readOnly})
	return nil
}

// ParseTokens reads the token-file format described on TokenSet. Errors name
// the line, never the token.
func ParseTokens(r io.Reader) (*TokenSet, error) {
	ts := &TokenSet{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		tok, readOnly := strings.CutPrefix(line, ReadOnlyPrefix)
		if err := ts.add(tok, readOnly); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(ts.tokens) == 0 {
		return nil, errors.New("no tokens (one per line; '#' starts a comment)")
	}
	return ts, nil
}

// LoadTokenFile reads a token file, refusing one that group or others can
// read: the tokens grant full control of the site's machines.
func LoadTokenFile(path string) (*TokenSet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("token file %s has mode %04o and is readable by group or others; run: chmod 600 %s", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	ts, err := ParseTokens(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	return ts, nil
}

// Len is the number of tokens.
func (ts *TokenSet) Len() int { return len(ts.tokens) }

// check compares the presented token with every token, always all of them,
// so the time taken says nothing about which token (if any) matched.
func (ts *TokenSet) check(tok string) (ok, readOnly bool) {
	d := sha256.Sum256([]byte(tok))
	match, ro := 0, 0
	for _, e := range ts.tokens {
		eq := subtle.ConstantTimeCompare(d[:], e.digest[:])
		match |= eq
		ro |= eq & boolInt(e.readOnly)
	}
	return match == 1, ro == 1
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// authenticate answers 401/403 itself and reports whether the request may
// go on; needWrite refuses read-only tokens whatever the method.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, needWrite bool) bool {
	h := r.Header.Get("Authorization")
	scheme, tok, found := strings.Cut(h, " ")
	if h == "" || !found || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="baremetal-agent"`)
		writeJSON(w, http.StatusUnauthorized, api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeUnauthorized,
			Message: "missing bearer token: send Authorization: Bearer <token> (a token from the agent's token file)"}})
		return false
	}
	ok, readOnly := s.tokens.Load().check(strings.TrimSpace(tok))
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="baremetal-agent", error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeUnauthorized,
			Message: "invalid bearer token"}})
		return false
	}
	if readOnly && needWrite {
		writeJSON(w, http.StatusForbidden, api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeForbidden,
			Message: "this token is read-only (readonly: in the token file); reading a secret needs a read-write token"}})
		return false
	}
	if readOnly && r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeJSON(w, http.StatusForbidden, api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeForbidden,
			Message: "this token is read-only (readonly: in the token file); " + r.Method + " needs a read-write token"}})
		return false
	}
	return true
}
