//go:build linux

package packaging

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

const project = "terraform-provider-baremetal"

// release is a goreleaser dist directory (make release-snapshot sets
// BAREMETAL_DIST) and the build matrix .goreleaser.yml asks for.
type release struct {
	dir     string
	version string
	targets map[string][][2]string // build id -> os/arch pairs
}

func distRelease(t *testing.T) *release {
	t.Helper()
	dir := os.Getenv("BAREMETAL_DIST")
	if dir == "" {
		t.Skip("checks a built release: run make release-snapshot (sets BAREMETAL_DIST)")
	}
	var meta struct {
		ProjectName string `json:"project_name"`
		Version     string `json:"version"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "metadata.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &meta))
	require.Equal(t, project, meta.ProjectName, "project_name in .goreleaser.yml")
	require.NotEmpty(t, meta.Version)

	var cfg struct {
		Builds []struct {
			ID     string   `yaml:"id"`
			Goos   []string `yaml:"goos"`
			Goarch []string `yaml:"goarch"`
		} `yaml:"builds"`
	}
	data, err = os.ReadFile("../.goreleaser.yml")
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(data, &cfg))
	r := &release{dir: dir, version: meta.Version, targets: map[string][][2]string{}}
	for _, b := range cfg.Builds {
		for _, goos := range b.Goos {
			for _, goarch := range b.Goarch {
				r.targets[b.ID] = append(r.targets[b.ID], [2]string{goos, goarch})
			}
		}
	}
	require.NotEmpty(t, r.targets["provider"])
	return r
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// TestReleaseProviderArchives checks what the Terraform Registry requires:
// terraform-provider-baremetal_<v>_<os>_<arch>.zip holding the binary
// terraform-provider-baremetal_v<v> alone.
func TestReleaseProviderArchives(t *testing.T) {
	r := distRelease(t)
	for _, target := range r.targets["provider"] {
		name := fmt.Sprintf("%s_%s_%s_%s.zip", project, r.version, target[0], target[1])
		t.Run(name, func(t *testing.T) {
			zr, err := zip.OpenReader(filepath.Join(r.dir, name))
			require.NoError(t, err)
			defer zr.Close()
			want := project + "_v" + r.version
			if target[0] == "windows" {
				want += ".exe"
			}
			var names []string
			for _, f := range zr.File {
				names = append(names, f.Name)
			}
			require.Equal(t, []string{want}, names)
			if target[0] != "windows" {
				assert.NotZero(t, zr.File[0].Mode()&0o111, "the binary is executable")
			}
		})
	}
}

// TestReleaseChecksums checks SHA256SUMS: every provider zip and the
// registry manifest are listed, and every listed file has that hash.
func TestReleaseChecksums(t *testing.T) {
	r := distRelease(t)
	f, err := os.Open(filepath.Join(r.dir, fmt.Sprintf("%s_%s_SHA256SUMS", project, r.version)))
	require.NoError(t, err)
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		require.True(t, ok, "SHA256SUMS line %q", sc.Text())
		sums[name] = sum
	}
	require.NoError(t, sc.Err())

	manifest := fmt.Sprintf("%s_%s_manifest.json", project, r.version)
	require.Contains(t, sums, manifest)
	assert.Equal(t, sha256File(t, "../terraform-registry-manifest.json"), sums[manifest])
	for _, target := range r.targets["provider"] {
		assert.Contains(t, sums, fmt.Sprintf("%s_%s_%s_%s.zip", project, r.version, target[0], target[1]))
	}
	for name, sum := range sums {
		if name == manifest {
			continue // uploaded from the tree under this name; checked above
		}
		assert.Equal(t, sum, sha256File(t, filepath.Join(r.dir, name)), name)
	}
}

// TestReleaseCtlArchives checks that baremetalctl ships for each OS an
// operator works from, as a single binary.
func TestReleaseCtlArchives(t *testing.T) {
	r := distRelease(t)
	require.NotEmpty(t, r.targets["ctl"])
	for _, target := range r.targets["ctl"] {
		base := fmt.Sprintf("baremetalctl_%s_%s_%s", r.version, target[0], target[1])
		t.Run(base, func(t *testing.T) {
			if target[0] == "windows" {
				zr, err := zip.OpenReader(filepath.Join(r.dir, base+".zip"))
				require.NoError(t, err)
				defer zr.Close()
				require.Len(t, zr.File, 1)
				assert.Equal(t, "baremetalctl.exe", zr.File[0].Name)
				return
			}
			assert.Equal(t, []string{"baremetalctl"}, tarNames(t, filepath.Join(r.dir, base+".tar.gz")))
		})
	}
}

func tarNames(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	gz, err := gzip.NewReader(f)
	require.NoError(t, err)
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		require.NoError(t, err)
		names = append(names, h.Name)
	}
}

// packageFile finds the one package of a kind and architecture in dist.
func packageFile(t *testing.T, r *release, pattern string) string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(r.dir, pattern))
	require.NoError(t, err)
	require.Len(t, matches, 1, "dist/%s", pattern)
	return matches[0]
}

// packaged is what both packages must install, with modes.
var packaged = map[string]string{
	"/usr/bin/baremetal-agent":                        "-rwxr-xr-x",
	"/usr/bin/baremetalctl":                           "-rwxr-xr-x",
	"/usr/lib/systemd/system/baremetal-agent.service": "-rw-r--r--",
	"/usr/lib/sysusers.d/baremetal-agent.conf":        "-rw-r--r--",
	"/etc/baremetal-agent/config.yaml":                "-rw-r-----",
	"/usr/share/doc/baremetal-agent/TOKENS.md":        "-rw-r--r--",
	"/usr/share/doc/baremetal-agent/README.md":        "-rw-r--r--",
}

func TestReleaseDebs(t *testing.T) {
	r := distRelease(t)
	dpkgDeb := tool(t, "dpkg-deb", "dpkg")
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			deb := packageFile(t, r, "baremetal-agent_*_"+arch+".deb")
			fields, err := exec.Command(dpkgDeb, "-f", deb, "Package", "Architecture", "Recommends").CombinedOutput()
			require.NoError(t, err, "%s", fields)
			assert.Equal(t, "Package: baremetal-agent\nArchitecture: "+arch+"\nRecommends: ipxe\n", string(fields))

			list, err := exec.Command(dpkgDeb, "-c", deb).CombinedOutput()
			require.NoError(t, err, "%s", list)
			modes := map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(string(list)), "\n") {
				f := strings.Fields(line)
				modes[strings.TrimPrefix(f[len(f)-1], ".")] = f[0]
			}
			for path, mode := range packaged {
				assert.Equal(t, mode, modes[path], path)
			}
			assert.Equal(t, "drwxr-x---", modes["/etc/baremetal-agent/"], "the config dir, where the token file goes")

			ctrl := t.TempDir()
			out, err := exec.Command(dpkgDeb, "-e", deb, ctrl).CombinedOutput()
			require.NoError(t, err, "%s", out)
			conffiles, err := os.ReadFile(filepath.Join(ctrl, "conffiles"))
			require.NoError(t, err)
			assert.Equal(t, "/etc/baremetal-agent/config.yaml\n", string(conffiles), "an upgrade keeps the operator's config")
			for _, script := range []string{"postinst", "prerm", "postrm"} {
				assert.FileExists(t, filepath.Join(ctrl, script))
			}
		})
	}
}

// TestReleaseDebInstall installs the host architecture's .deb into a
// scratch root with the real dpkg, maintainer scripts included, and checks
// the layout, the service user, the unit, and removal.
func TestReleaseDebInstall(t *testing.T) {
	r := distRelease(t)
	dpkg := tool(t, "dpkg", "dpkg")
	tool(t, "systemd-sysusers", "systemd")
	deb := packageFile(t, r, "baremetal-agent_*_"+runtime.GOARCH+".deb")

	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	for name, content := range map[string]string{
		"var/lib/dpkg/status": "", "var/lib/dpkg/available": "",
		"etc/passwd": "root:x:0:0:root:/root:/bin/bash\n", "etc/group": "root:x:0:\n",
		"etc/shadow": "root:*:19000:0:99999:7:::\n", "etc/gshadow": "root:*::\n",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(root, name), []byte(content), 0o644))
	}
	dpkgIn := func(args ...string) string {
		t.Helper()
		// Chrootless: the scripts run on the host with DPKG_ROOT set,
		// which they honour, so the root needs no shell of its own.
		cmd := exec.Command(dpkg, append([]string{"--root=" + root, "--force-script-chrootless", "--log=/dev/null"}, args...)...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "dpkg %s:\n%s", strings.Join(args, " "), out)
		return string(out)
	}
	out := dpkgIn("--install", deb)
	assert.Contains(t, out, "create the API token file", "postinst tells the operator what to do next")

	for path, mode := range packaged {
		fi, err := os.Stat(filepath.Join(root, path))
		if assert.NoError(t, err, path) {
			assert.Equal(t, mode, fi.Mode().String(), path)
		}
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	require.NoError(t, err)
	var user []string
	for _, line := range strings.Split(string(passwd), "\n") {
		if strings.HasPrefix(line, "baremetal-agent:") {
			user = strings.Split(line, ":")
		}
	}
	require.Len(t, user, 7, "postinst created the service user:\n%s", passwd)
	assert.Equal(t, "/var/lib/baremetal-agent", user[5])
	assert.Equal(t, "/usr/sbin/nologin", user[6])
	uid, err := strconv.Atoi(user[2])
	require.NoError(t, err)
	assert.Less(t, uid, 1000, "a system user")

	group, err := os.ReadFile(filepath.Join(root, "etc/group"))
	require.NoError(t, err)
	assert.Contains(t, string(group), "baremetal-agent:x:"+user[3]+":")
	fi, err := os.Stat(filepath.Join(root, "etc/baremetal-agent"))
	require.NoError(t, err)
	assert.Equal(t, "drwxr-x---", fi.Mode().String())
	assert.Equal(t, user[3], fmt.Sprint(statGID(t, fi)), "the config dir belongs to the service group")
	fi, err = os.Stat(filepath.Join(root, "etc/baremetal-agent/config.yaml"))
	require.NoError(t, err)
	assert.Equal(t, user[3], fmt.Sprint(statGID(t, fi)), "the service user can read its config")

	agent, err := exec.Command(filepath.Join(root, "usr/bin/baremetal-agent"), "version").CombinedOutput()
	require.NoError(t, err, "%s", agent)
	assert.Contains(t, string(agent), "baremetal-agent "+r.version)
	ctl, err := exec.Command(filepath.Join(root, "usr/bin/baremetalctl"), "help").CombinedOutput()
	require.NoError(t, err, "%s", ctl)
	assert.Contains(t, string(ctl), "rollout status")

	scratchUnitRoot(t, root)
	verifyUnit(t, root)

	dpkgIn("--remove", "baremetal-agent")
	assert.NoFileExists(t, filepath.Join(root, "usr/bin/baremetal-agent"))
	assert.FileExists(t, filepath.Join(root, "etc/baremetal-agent/config.yaml"), "remove keeps conffiles; purge removes them")
	dpkgIn("--purge", "baremetal-agent")
	assert.NoFileExists(t, filepath.Join(root, "etc/baremetal-agent/config.yaml"))
}

func TestReleaseRPMs(t *testing.T) {
	r := distRelease(t)
	rpm := tool(t, "rpm", "rpm")
	for _, arch := range []string{"x86_64", "aarch64"} {
		t.Run(arch, func(t *testing.T) {
			pkg := packageFile(t, r, "baremetal-agent-*."+arch+".rpm")
			query := func(args ...string) string {
				t.Helper()
				out, err := exec.Command(rpm, append([]string{"-qp"}, append(args, pkg)...)...).CombinedOutput()
				require.NoError(t, err, "rpm -qp %s:\n%s", strings.Join(args, " "), out)
				return string(out)
			}
			assert.Equal(t, "baremetal-agent "+arch, query("--qf", "%{NAME} %{ARCH}"))
			modes := map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(query("--qf", `[%{FILEMODES:perms} %{FILENAMES}\n]`)), "\n") {
				mode, path, _ := strings.Cut(line, " ")
				modes[path] = mode
			}
			for path, mode := range packaged {
				assert.Equal(t, mode, modes[path], path)
			}
			assert.Equal(t, "drwxr-x---", modes["/etc/baremetal-agent"])
			configs := strings.Fields(query("--configfiles"))
			assert.True(t, slices.Contains(configs, "/etc/baremetal-agent/config.yaml"), "config files: %v", configs)
			scripts := query("--scripts")
			assert.Contains(t, scripts, "postinstall scriptlet")
			assert.Contains(t, scripts, "systemd-sysusers")
		})
	}
}
