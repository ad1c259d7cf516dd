package agentd

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

func TestStageTFTPRootResolvesPackageSymlinks(t *testing.T) {
	pkg := t.TempDir()     // like /usr/lib/ipxe
	outside := t.TempDir() // like /boot
	if err := os.WriteFile(filepath.Join(pkg, "undionly.kpxe"), []byte("bios"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "ipxe.efi"), []byte("uefi binary"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "ipxe.efi"), filepath.Join(pkg, "ipxe.efi")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pkg, "README"), []byte("not a binary"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "tftp")
	root, err := stageTFTPRoot(pkg, dst, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"undionly.kpxe": "bios", "ipxe.efi": "uefi binary"} {
		fi, err := os.Lstat(filepath.Join(root, name))
		if err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("%s: staged as %v (err %v), want a regular file", name, fi, err)
		}
		if got, _ := os.ReadFile(filepath.Join(root, name)); string(got) != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "README")); err == nil {
		t.Error("a non-binary file was staged")
	}
	// A second start finds everything in place.
	if _, err := stageTFTPRoot(pkg, dst, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if _, err := stageTFTPRoot(t.TempDir(), filepath.Join(t.TempDir(), "x"), slog.New(slog.DiscardHandler)); err == nil {
		t.Error("an empty source staged nothing without an error")
	}
}
