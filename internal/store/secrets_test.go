package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// Every password and token ever written must be absent from the raw file,
// including pages bbolt freed but did not overwrite: the store only ever
// hands bbolt ciphertext, so stale pages hold ciphertext too.
func TestSecretsNeverReachTheFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "agent.db")
	s, err := OpenBolt(path, BoltOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	var secrets []string
	secret := func(kind string, i int) string {
		v := fmt.Sprintf("%s-Zq8%d-%d-unlikely-bytes", kind, i, time.Now().UnixNano())
		secrets = append(secrets, v)
		return v
	}
	for i := range 20 {
		m := testMachine(fmt.Sprintf("m%d", i))
		m.BMC.Password = secret("bmcpass", i)
		m.Run = &model.Run{ID: "r1", Token: secret("runtoken", i)}
		if _, err := s.CreateMachine(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// Rotate secrets a few times so old values end up on freed pages.
	for round := range 3 {
		for i := range 20 {
			pw, tok := secret("bmcpass-r", round*100+i), secret("runtoken-r", round*100+i)
			if _, err := s.UpdateMachine(ctx, fmt.Sprintf("m%d", i), func(m *model.Machine) (bool, error) {
				m.BMC.Password = pw
				m.Run.Token = tok
				return true, nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Status-only writes re-seal the unchanged secrets with fresh nonces.
	for i := range 20 {
		if _, err := s.UpdateMachine(ctx, fmt.Sprintf("m%d", i), func(m *model.Machine) (bool, error) {
			m.Status.Phase = model.PhaseProvisioning
			return false, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		if err := s.DeleteMachine(ctx, fmt.Sprintf("m%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	// Live data still decrypts to the latest values.
	last, err := s.GetMachine(ctx, "m19")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(last.BMC.Password, "bmcpass-r-Zq8219-") || !strings.HasPrefix(last.Run.Token, "runtoken-r-Zq8219-") {
		t.Fatalf("live secrets = %q / %q", last.BMC.Password, last.Run.Token)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A compacted copy (bbolt's offline compaction, as an operator would run
	// it) holds only what the live records hold.
	compacted := filepath.Join(t.TempDir(), "compacted.db")
	if err := compactFile(compacted, path); err != nil {
		t.Fatal(err)
	}

	key, err := os.ReadFile(path + ".key")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{path, compacted} {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, sec := range append(secrets, string(key)) {
			if bytes.Contains(raw, []byte(sec)) {
				t.Errorf("%s contains %q", filepath.Base(file), sec)
			}
		}
		// The machines themselves are in the file, so the search looked in
		// the right place.
		if !bytes.Contains(raw, []byte(`"name":"m19"`)) {
			t.Fatalf("%s lacks machine m19; search is meaningless", filepath.Base(file))
		}
	}
}

func compactFile(dst, src string) error {
	from, err := bolt.Open(src, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer from.Close()
	to, err := bolt.Open(dst, 0o600, nil)
	if err != nil {
		return err
	}
	if err := bolt.Compact(to, from, 0); err != nil {
		to.Close()
		return err
	}
	return to.Close()
}

// A sealed blob opens only for the machine and field it was written for.
func TestSealedBlobsAreBoundToTheirMachine(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", BoltOptions{})
	for _, n := range []string{"m1", "m2"} {
		m := testMachine(n)
		m.Run = &model.Run{ID: "r", Token: "token-of-" + n}
		if _, err := s.CreateMachine(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// An attacker with write access to the file copies m1's record over m2's,
	// renaming it, to make the agent use m1's password against m2's BMC.
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMachines)
		data := bytes.Replace(b.Get([]byte("m1")), []byte(`"name":"m1"`), []byte(`"name":"m2"`), 1)
		return b.Put([]byte("m2"), data)
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.GetMachine(ctx, "m2")
	if err == nil || !strings.Contains(err.Error(), `machine "m2": BMC password: cannot decrypt`) {
		t.Fatalf("swapped blob: err = %v", err)
	}
	if strings.Contains(err.Error(), "pw-m1") {
		t.Fatalf("error leaks the password: %v", err)
	}

	// Swapping fields within one machine fails too.
	sl := s.sealer
	blob, err := sl.seal("secret", adRunToken("m1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sl.open(blob, adBMCPassword("m1")); err == nil {
		t.Fatal("run token blob opened as a BMC password")
	}
	if got, err := sl.open(blob, adRunToken("m1")); err != nil || got != "secret" {
		t.Fatalf("open = %q, %v", got, err)
	}
	// Same plaintext twice gives different blobs (random nonce).
	again, _ := sl.seal("secret", adRunToken("m1"))
	if bytes.Equal(blob, again) {
		t.Fatal("two seals of the same value are identical")
	}
	if _, err := sl.open(blob[:5], adRunToken("m1")); err == nil {
		t.Fatal("truncated blob opened")
	}
}

func TestKeyFile(t *testing.T) {
	t.Run("created 0600 with 32 bytes", func(t *testing.T) {
		dir := t.TempDir()
		keyPath := filepath.Join(dir, "secret.key")
		s := openTest(t, filepath.Join(dir, "agent.db"), BoltOptions{KeyFile: keyPath})
		s.Close()
		fi, err := os.Stat(keyPath)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 || fi.Size() != keySize {
			t.Fatalf("key file mode %v size %d", fi.Mode().Perm(), fi.Size())
		}
		if fi, err := os.Stat(filepath.Join(dir, "agent.db")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("data file: %v, %v", fi.Mode(), err)
		}
	})

	modes := []struct {
		mode    os.FileMode
		refused bool
	}{
		{0o600, false},
		{0o400, false},
		{0o640, true},
		{0o644, true},
		{0o660, true},
		{0o604, true},
		{0o602, true},
		{0o666, true},
	}
	for _, tc := range modes {
		t.Run(fmt.Sprintf("mode %04o", tc.mode), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "agent.db")
			s := openTest(t, path, BoltOptions{})
			s.Close()
			keyPath := path + ".key"
			if err := os.Chmod(keyPath, tc.mode); err != nil {
				t.Fatal(err)
			}
			s2, err := OpenBolt(path, BoltOptions{Logger: quiet})
			if !tc.refused {
				if err != nil {
					t.Fatalf("mode %04o refused: %v", tc.mode, err)
				}
				s2.Close()
				return
			}
			if err == nil {
				s2.Close()
				t.Fatalf("mode %04o accepted", tc.mode)
			}
			for _, want := range []string{keyPath, "chmod 600 " + keyPath} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("err = %v, want it to contain %q", err, want)
				}
			}
		})
	}

	t.Run("wrong size refused", func(t *testing.T) {
		dir := t.TempDir()
		keyPath := filepath.Join(dir, "k")
		if err := os.WriteFile(keyPath, []byte("short"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := OpenBolt(filepath.Join(dir, "agent.db"), BoltOptions{KeyFile: keyPath, Logger: quiet})
		if err == nil || !strings.Contains(err.Error(), "holds 5 bytes, want exactly 32") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("other key refused", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "agent.db")
		s := openTest(t, path, BoltOptions{})
		if _, err := s.CreateMachine(context.Background(), testMachine("m1")); err != nil {
			t.Fatal(err)
		}
		s.Close()
		other := filepath.Join(dir, "other.key")
		if err := os.WriteFile(other, bytes.Repeat([]byte{7}, keySize), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := OpenBolt(path, BoltOptions{KeyFile: other, Logger: quiet})
		if err == nil || !strings.Contains(err.Error(), "does not match data file") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("missing key with sealed data refused", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "agent.db")
		s := openTest(t, path, BoltOptions{})
		s.Close()
		if err := os.Remove(path + ".key"); err != nil {
			t.Fatal(err)
		}
		_, err := OpenBolt(path, BoltOptions{Logger: quiet})
		if err == nil || !strings.Contains(err.Error(), "is missing but data file") {
			t.Fatalf("err = %v", err)
		}
		if _, err := os.Stat(path + ".key"); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a new key file was created over the lost one: %v", err)
		}
	})
}
