// Package provider is the Terraform provider for machines, boot profiles and
// clusters managed by baremetal-agent. The provider only states desired
// objects and waits; the agent owns the provisioning state machine.
package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/ephemeral"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
)

// Environment variables read when the matching attribute is not set, so a
// Terraform Cloud workspace needs only variables, no provider block values.
const (
	EnvEndpoint  = "BAREMETAL_ENDPOINT"
	EnvToken     = "BAREMETAL_TOKEN"
	EnvCACertPEM = "BAREMETAL_CA_CERT_PEM"
	EnvInsecure  = "BAREMETAL_INSECURE"
)

// infoTimeout bounds the reachability check in Configure: an agent that does
// not answer /v1/info within it is reported at once instead of failing every
// resource later with a less obvious error.
const infoTimeout = 30 * time.Second

var (
	_ provider.Provider                       = (*baremetalProvider)(nil)
	_ provider.ProviderWithEphemeralResources = (*baremetalProvider)(nil)
)

type baremetalProvider struct {
	version string
}

// New returns the provider factory that providerserver.Serve expects.
func New(version string) func() provider.Provider {
	return func() provider.Provider { return &baremetalProvider{version: version} }
}

type providerModel struct {
	Endpoint  types.String `tfsdk:"endpoint"`
	Token     types.String `tfsdk:"token"`
	CACertPEM types.String `tfsdk:"ca_cert_pem"`
	Insecure  types.Bool   `tfsdk:"insecure"`
}

func (p *baremetalProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "baremetal"
	resp.Version = p.version
}

func (p *baremetalProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Provisions bare-metal servers through a `baremetal-agent`: the provider states the desired " +
			"machines, boot profiles and clusters and waits while the agent powers servers on over Redfish, " +
			"network-boots them and reports them provisioned. It talks only to the agent, over HTTPS with a token.",
		Attributes: map[string]schema.Attribute{
			"endpoint": schema.StringAttribute{
				MarkdownDescription: "Base URL of the agent's API, e.g. `https://agent.example.net:8443`. " +
					"May also be set with the `" + EnvEndpoint + "` environment variable.",
				Optional:   true,
				Validators: []validator.String{urlScheme("https", "http")},
			},
			"token": schema.StringAttribute{
				MarkdownDescription: "Bearer token from the agent's token file. May also be set with the `" + EnvToken + "` environment variable.",
				Optional:            true,
				Sensitive:           true,
			},
			"ca_cert_pem": schema.StringAttribute{
				MarkdownDescription: "PEM-encoded CA certificate(s) to trust for the agent's TLS certificate, e.g. the " +
					"self-signed `api-cert.pem` from the agent's data directory. May also be set with the `" + EnvCACertPEM + "` environment variable.",
				Optional: true,
			},
			"insecure": schema.BoolAttribute{
				MarkdownDescription: "Skip verification of the agent's TLS certificate. Only for labs and tests. " +
					"May also be set with the `" + EnvInsecure + "` environment variable (`true`/`false`).",
				Optional: true,
			},
		},
	}
}

func (p *baremetalProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var cfg providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	// Values computed from other resources are unknown during plan; the
	// provider then stays unconfigured and resources say so only if they
	// actually need the agent before apply.
	if cfg.Endpoint.IsUnknown() || cfg.Token.IsUnknown() || cfg.CACertPEM.IsUnknown() || cfg.Insecure.IsUnknown() {
		tflog.Debug(ctx, "provider configuration contains unknown values; deferring client setup")
		return
	}

	endpoint, endpointSource := stringSetting(cfg.Endpoint, EnvEndpoint, "endpoint")
	token, _ := stringSetting(cfg.Token, EnvToken, "token")
	caPEM, _ := stringSetting(cfg.CACertPEM, EnvCACertPEM, "ca_cert_pem")
	insecure := cfg.Insecure.ValueBool()
	if cfg.Insecure.IsNull() {
		if v, ok := os.LookupEnv(EnvInsecure); ok && v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				resp.Diagnostics.AddAttributeError(path.Root("insecure"), "Invalid "+EnvInsecure+" Environment Variable",
					fmt.Sprintf("%s=%q is not a boolean; use true or false.", EnvInsecure, v))
				return
			}
			insecure = b
		}
	}

	if endpoint == "" {
		resp.Diagnostics.AddAttributeError(path.Root("endpoint"), "Missing Baremetal Agent Endpoint",
			"The provider needs the agent's API URL: set the provider's \"endpoint\" attribute or the "+EnvEndpoint+
				" environment variable, e.g. https://agent.example.net:8443.")
	}
	if token == "" {
		resp.Diagnostics.AddAttributeError(path.Root("token"), "Missing Baremetal Agent Token",
			"The provider needs an API token from the agent's token file: set the provider's \"token\" attribute or the "+
				EnvToken+" environment variable.")
	}
	if resp.Diagnostics.HasError() {
		return
	}

	c, err := client.New(client.Config{
		Endpoint:    endpoint,
		Token:       token,
		CACertPEM:   caPEM,
		Insecure:    insecure,
		UserAgent:   "terraform-provider-baremetal/" + p.version + " (+https://registry.terraform.io/providers/openbaremetal/baremetal) terraform/" + req.TerraformVersion,
		LeaseHolder: leaseHolder(),
	})
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("endpoint"), "Invalid Baremetal Provider Configuration",
			fmt.Sprintf("Cannot set up the agent client (endpoint from %s): %s", endpointSource, err))
		return
	}

	infoCtx, cancel := context.WithTimeout(ctx, infoTimeout)
	defer cancel()
	info, err := c.Info(infoCtx)
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("endpoint"), "Unable to Reach Baremetal Agent",
			fmt.Sprintf("The agent at %s (endpoint from %s) did not answer GET %s: %s\n\n"+
				"Check that baremetal-agent is running and reachable from where Terraform runs, that the token is valid, "+
				"and that its certificate is trusted (ca_cert_pem / %s).", c.Endpoint(), endpointSource, api.PathInfo, err, EnvCACertPEM))
		return
	}
	if info.APIVersion != "" && info.APIVersion != api.APIVersion {
		resp.Diagnostics.AddAttributeError(path.Root("endpoint"), "Unsupported Baremetal Agent API Version",
			fmt.Sprintf("The agent at %s speaks API %q; this provider speaks %q. Upgrade the agent or the provider so they match.",
				c.Endpoint(), info.APIVersion, api.APIVersion))
		return
	}
	if !slices.Contains(info.Capabilities, api.CapabilityReadiness) {
		resp.Diagnostics.AddAttributeError(path.Root("endpoint"), "Baremetal Agent Too Old",
			fmt.Sprintf("The agent at %s (version %s) does not publish machine and cluster readiness (capability %q), which this provider waits on. Upgrade the agent.",
				c.Endpoint(), info.Version, api.CapabilityReadiness))
		return
	}
	tflog.Info(ctx, "connected to baremetal-agent", map[string]any{"endpoint": c.Endpoint(), "agent_version": info.Version})

	resp.ResourceData = c
	resp.DataSourceData = c
	resp.EphemeralResourceData = c
}

func (p *baremetalProvider) EphemeralResources(_ context.Context) []func() ephemeral.EphemeralResource {
	return []func() ephemeral.EphemeralResource{
		NewMachineSecretEphemeralResource,
	}
}

func (p *baremetalProvider) Resources(_ context.Context) []func() resource.Resource {
	return []func() resource.Resource{
		NewBootProfileResource,
		NewTemplateResource,
		NewMachineResource,
		NewClusterResource,
		NewSiteParamsResource,
	}
}

func (p *baremetalProvider) DataSources(_ context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{
		NewAgentDataSource,
		NewBootProfileDataSource,
		NewRenderedTemplateDataSource,
		NewMachineDataSource,
		NewMachinesDataSource,
	}
}

// stringSetting returns the attribute's value, else the environment
// variable's, and says which one it came from for diagnostics.
func stringSetting(v types.String, env, attr string) (string, string) {
	if !v.IsNull() && v.ValueString() != "" {
		return v.ValueString(), "the provider's \"" + attr + "\" attribute"
	}
	return os.Getenv(env), "the " + env + " environment variable"
}

// leaseHolder names the writer to the agent's per-machine lease. A run
// that fails (or dies) mid-wait leaves its lease to run out on its own, so the
// name must stay the same across the runs of one configuration (or a retry
// after a failed apply would conflict with itself) and differ between
// configurations, hosts and Terraform Cloud workspaces, which are the
// writers that must not interleave. Terraform's own state lock already
// serialises runs of one configuration.
func leaseHolder() string {
	if slug := os.Getenv("TFC_WORKSPACE_SLUG"); slug != "" {
		return "terraform-cloud:" + truncate(slug, 150)
	}
	host, _ := os.Hostname()
	dir, _ := os.Getwd() // Terraform starts providers in the configuration's directory
	sum := sha256.Sum256([]byte(dir))
	return fmt.Sprintf("terraform@%s:%s#%s", truncate(host, 64), truncate(filepath.Base(dir), 64), hex.EncodeToString(sum[:6]))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
