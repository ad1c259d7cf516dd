package agentd

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// stageTFTPRoot copies the iPXE binaries of src (Debian's ipxe package
// directory by default) into dst and returns dst. Debian installs some of
// them as symlinks out of the directory (/usr/lib/ipxe/ipxe.efi ->
// /boot/ipxe.efi), which the TFTP server rightly refuses to follow; a
// staged copy keeps that refusal strict and still serves every binary.
// Files are copied only when missing or changed in size, so restarts are
// cheap.
func stageTFTPRoot(src, dst string, log *slog.Logger) (string, error) {
	entries, err := os.ReadDir(src)
	if err != nil {
		return "", fmt.Errorf("tftp root: reading %s: %w (install Debian's ipxe package, or set --tftp-root)", src, err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", fmt.Errorf("tftp root: %w", err)
	}
	staged := 0
	for _, e := range entries {
		name := e.Name()
		if !isIPXEBinary(name) {
			continue
		}
		in := filepath.Join(src, name)
		fi, err := os.Stat(in) // follows the package's own symlinks
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		out := filepath.Join(dst, name)
		if cur, err := os.Stat(out); err == nil && cur.Size() == fi.Size() && !cur.ModTime().Before(fi.ModTime()) {
			staged++
			continue
		}
		if err := copyFile(in, out); err != nil {
			return "", fmt.Errorf("tftp root: staging %s: %w", name, err)
		}
		staged++
	}
	if staged == 0 {
		return "", fmt.Errorf("tftp root: no iPXE binaries (*.kpxe, *.efi) in %s (install Debian's ipxe package, or set --tftp-root)", src)
	}
	log.Info("tftp root staged", "from", src, "to", dst, "files", staged)
	return dst, nil
}

func isIPXEBinary(name string) bool {
	for _, ext := range []string{".kpxe", ".kkpxe", ".pxe", ".efi", ".lkrn"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".staging-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
