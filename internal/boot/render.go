package boot

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"unicode"
	"unicode/utf8"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// RenderContext is what every profile template (cmdline, iPXE script,
// install templates) sees as its dot.
type RenderContext struct {
	Machine MachineView
	Profile ProfileView
	// Cluster is nil unless the machine is a cluster member.
	Cluster *ClusterView
	// Params merges site params < profile params < cluster params <
	// machine params.
	Params map[string]string
	// Site is the agent's site-wide settings.
	Site SiteView
	URLs URLs
	// Token is the run's one-time callback token ("" outside a run).
	Token string
	// RunID names the provisioning run ("" outside a run). Unlike the
	// token it is not a secret, so it can go where the OS keeps it readable
	// (a NoCloud instance-id that must change with every re-image).
	RunID string
	// Kernel and Initrds are the absolute URLs iPXE fetches; Cmdline is the
	// rendered profile cmdline plus the baremetal.* convention.
	Kernel  string
	Initrds []string
	Cmdline string
}

// MachineView is the machine as templates see it.
type MachineView struct {
	Name      string
	MACs      []string
	Params    map[string]string
	Inventory *model.Inventory
	Addresses []string
	Cluster   string
	Role      string
}

// SiteView is the site as templates see it.
type SiteView struct {
	Params map[string]string
}

// ProfileView is the boot profile as templates see it.
type ProfileView struct {
	Name    string
	Kernel  string
	Initrds []string
	Cmdline string
	Params  map[string]string
}

// ClusterView is the machine's cluster as templates see it.
type ClusterView struct {
	Name    string
	Params  map[string]string
	Roles   []string // role names in rollout order
	Members []MemberView
	// ControlPlane is the first address of the first member of the role
	// named "control-plane", or else of the first role; "" until known.
	ControlPlane string
	// ControlPlaneRole is the role ControlPlane is taken from, so that a
	// template can tell the control plane's members from the others.
	ControlPlaneRole string
}

// MemberView is one cluster member.
type MemberView struct {
	Machine   string
	Role      string
	Addresses []string
	Phase     string
}

// Address is the member's first address, or "".
func (m MemberView) Address() string {
	if len(m.Addresses) == 0 {
		return ""
	}
	return m.Addresses[0]
}

// MembersOf lists the members holding role.
func (c *ClusterView) MembersOf(role string) []MemberView {
	var out []MemberView
	for _, m := range c.Members {
		if m.Role == role {
			out = append(out, m)
		}
	}
	return out
}

// URLs are the agent endpoints a machine is handed, all on the boot URL.
type URLs struct {
	Boot      string
	Callback  string // with the run token
	Templates string // base: append "/<name>?token=<token>", or use templateURL
	Assets    string // per-machine assets base
}

// renderInput is everything one render needs, loaded from the store.
type renderInput struct {
	machine *model.Machine // nil when rendering a discovery profile for an unknown MAC
	mac     string
	profile *model.BootProfile
	cluster *model.Cluster
	members map[string]*model.Machine
	token   string
	// snippets are the site's snippets by name (stock ones are not listed).
	snippets map[string]*model.Template
	// site holds the site params; nil is none.
	site *model.Site
	// secrets feeds {{ secret }} in install templates; nil refuses them.
	secrets *secretSource
}

// paramLayers are the machine's params by layer, lowest first.
func (in renderInput) paramLayers() model.ParamLayers {
	var l model.ParamLayers
	if in.site != nil {
		l.Site = in.site.Params
	}
	if in.profile != nil {
		l.Profile = in.profile.Params
	}
	if in.cluster != nil {
		l.Cluster = in.cluster.Params
	}
	if in.machine != nil {
		l.Machine = in.machine.Params
	}
	return l
}

// secretLayers are the machine's secret params by layer, lowest first.
func (in renderInput) secretLayers() model.ParamLayers {
	var l model.ParamLayers
	if in.site != nil {
		l.Site = in.site.SecretParams
	}
	if in.profile != nil {
		l.Profile = in.profile.SecretParams
	}
	if in.cluster != nil {
		l.Cluster = in.cluster.SecretParams
	}
	if in.machine != nil {
		l.Machine = in.machine.SecretParams
	}
	return l
}

func (s *Server) newContext(in renderInput) *RenderContext {
	p := in.profile
	params, _ := in.paramLayers().Effective()
	ctx := &RenderContext{
		Profile: ProfileView{Name: p.Name, Kernel: p.Kernel, Initrds: append([]string(nil), p.Initrds...),
			Cmdline: p.Cmdline, Params: copyMap(p.Params)},
		Params: params,
		Token:  in.token,
		URLs:   URLs{Boot: s.bootURL},
	}
	if in.site != nil {
		ctx.Site.Params = copyMap(in.site.Params)
	}
	if m := in.machine; m != nil {
		ctx.Machine = MachineView{Name: m.Name, MACs: append([]string(nil), m.MACs...), Params: copyMap(m.Params),
			Addresses: ipsOnly(m.Status.Addresses), Cluster: m.Cluster, Role: m.Role}
		if m.Status.Inventory != nil {
			inv := *m.Status.Inventory
			inv.NICs = append([]model.NIC(nil), inv.NICs...)
			inv.Disks = append([]model.Disk(nil), inv.Disks...)
			inv.BootModes = append([]string(nil), inv.BootModes...)
			ctx.Machine.Inventory = &inv
		}
		if m.Run != nil {
			ctx.RunID = m.Run.ID
		}
		base := s.bootURL + "/machines/" + url.PathEscape(m.Name)
		ctx.URLs.Callback = base + "/callback?token=" + url.QueryEscape(in.token)
		ctx.URLs.Templates = base + "/templates"
		ctx.URLs.Assets = base + "/assets"
	} else {
		ctx.Machine.MACs = []string{in.mac}
		ctx.URLs.Assets = s.bootURL + "/assets"
	}
	if c := in.cluster; c != nil {
		cv := &ClusterView{Name: c.Name, Params: copyMap(c.Params)}
		for _, r := range c.Roles {
			cv.Roles = append(cv.Roles, r.Name)
		}
		for _, mem := range c.Members {
			mv := MemberView{Machine: mem.Machine, Role: mem.Role}
			if mm := in.members[mem.Machine]; mm != nil {
				mv.Addresses = ipsOnly(mm.Status.Addresses)
				mv.Phase = string(mm.Status.Phase)
			}
			cv.Members = append(cv.Members, mv)
		}
		cpRole := "control-plane"
		if len(cv.MembersOf(cpRole)) == 0 && len(cv.Roles) > 0 {
			cpRole = cv.Roles[0]
		}
		cv.ControlPlaneRole = cpRole
		for _, mv := range cv.MembersOf(cpRole) {
			if a := mv.Address(); a != "" {
				cv.ControlPlane = a
				break
			}
		}
		ctx.Cluster = cv
	}
	return ctx
}

// ipsOnly keeps the addresses that are IP addresses: a store written
// before callbacks were validated may hold others, and templates put these
// where configuration files expect an address.
func ipsOnly(addrs []string) []string {
	var out []string
	for _, a := range addrs {
		if ip, err := model.ReportedAddress(a); err == nil {
			out = append(out, ip)
		}
	}
	return out
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// funcs is the small, side-effect-free function set templates get. set
// is the template set being executed, for include (nil when only parsing).
func funcs(ctx *RenderContext, set **template.Template, sec *secretSource) template.FuncMap {
	// escaper wraps an escaping function so that a refusal names the
	// params (or secret params) holding the value.
	escaper := func(f func(string) (string, error)) func(string) (string, error) {
		return func(v string) (string, error) {
			out, err := f(v)
			if err != nil {
				return "", paramRefusal(ctx.Params, sec.namesHolding(v), v, err)
			}
			return out, nil
		}
	}
	return template.FuncMap{
		"join": func(sep string, items []string) string { return strings.Join(items, sep) },
		// split cuts a list param ("a, b,c") into its trimmed, non-empty items.
		"split": func(sep, s string) []string {
			var out []string
			for _, item := range strings.Split(s, sep) {
				if item = strings.TrimSpace(item); item != "" {
					out = append(out, item)
				}
			}
			return out
		},
		"default": func(def, v any) any {
			if v == nil || reflect.ValueOf(v).IsZero() {
				return def
			}
			return v
		},
		// required stops the render when a value a document cannot do
		// without is still empty (a cluster address not reported yet),
		// rather than serving a document that points nowhere.
		"required": func(why string, v any) (any, error) {
			if v == nil || reflect.ValueOf(v).IsZero() {
				return nil, requiredError(why)
			}
			return v, nil
		},
		"quote":        strconv.Quote,
		"toJSON":       toJSON,
		"shellQuote":   escaper(shellQuote),
		"ksQuote":      escaper(ksQuote),
		"ksList":       escaper(ksList),
		"preseedValue": escaper(preseedValue),
		"kernelArg":    escaper(kernelArg),
		"b64enc":       func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
		"indent": func(n int, s string) string {
			pad := strings.Repeat(" ", n)
			return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
		},
		"include": includeFunc(set),
		// secret is a secret param; generatedSecret a random value made
		// once per machine (see secretSource for where they render).
		"secret":          sec.secret,
		"generatedSecret": sec.generated,
		// templateURL names another template of the machine's profile.
		"templateURL": func(name string) (string, error) {
			if ctx.URLs.Templates == "" {
				return "", fmt.Errorf("templateURL %q: no machine (unknown MAC) to fetch templates for", name)
			}
			return ctx.URLs.Templates + "/" + url.PathEscape(name) + "?token=" + url.QueryEscape(ctx.Token), nil
		},
	}
}

// renderText executes one template, with the snippets it includes, into a
// buffer; the caller gets either the complete output or a *TemplateError
// naming the template (or snippet), its line and column and the failing
// param.
func renderText(name, text string, ctx *RenderContext, snippets map[string]*model.Template, sec *secretSource) (string, error) {
	var set *template.Template
	t, err := parseWithSnippets(name, text, funcs(ctx, &set, sec), snippets)
	if err != nil {
		return "", err
	}
	set = t
	var buf bytes.Buffer
	if err := t.Execute(&buf, ctx); err != nil {
		err = templateError(name, text, err)
		if te, ok := err.(*TemplateError); ok && te.Template != name {
			te.In = name
		}
		return "", sec.scrub(err)
	}
	return buf.String(), nil
}

// textParams refuses an install template's render whose params, in any
// scope, hold bytes that are not UTF-8. Every format an install template
// emits is text: JSON and YAML encoders would silently swap such bytes for
// U+FFFD and kickstart or preseed readers would choke, so the installer
// would not get the value as given. (Boot scripts are not refused: iPXE
// neutralisation and kernelArg already make any bytes inert there.) The
// API cannot store such a value (JSON bodies are UTF-8), but a store
// written by other means can hold one; the error names the param, never
// the value.
func textParams(ctx *RenderContext) error {
	type scope struct {
		name   string
		params map[string]string
	}
	scopes := []scope{{"", ctx.Params}, {"machine ", ctx.Machine.Params}, {"profile ", ctx.Profile.Params}, {"site ", ctx.Site.Params}}
	if ctx.Cluster != nil {
		scopes = append(scopes, scope{"cluster ", ctx.Cluster.Params})
	}
	for _, sc := range scopes {
		keys := make([]string, 0, len(sc.params))
		for k, v := range sc.params {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				keys = append(keys, k)
			}
		}
		if len(keys) > 0 {
			sort.Strings(keys)
			return fmt.Errorf("%sparam %q is not valid UTF-8; install templates are text, so set it again as UTF-8", sc.name, strings.ToValidUTF8(keys[0], "?"))
		}
	}
	return nil
}

// assetURL resolves a profile's kernel or initrd: absolute http(s) URLs pass
// through, anything else is a path under the assets directory, with query
// appended.
func assetURL(assetsBase, p, query string) (string, error) {
	if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
		if _, err := url.Parse(p); err != nil {
			return "", fmt.Errorf("asset URL %q: %w", p, err)
		}
		return p, nil
	}
	clean := strings.TrimPrefix(p, "/")
	segs := strings.Split(clean, "/")
	for i, seg := range segs {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("asset path %q must be a relative path inside the assets directory or an http(s) URL", p)
		}
		segs[i] = url.PathEscape(seg)
	}
	return assetsBase + "/" + strings.Join(segs, "/") + query, nil
}

// bootContext builds the context with Kernel, Initrds and Cmdline filled
// in. With forIPXE every value from outside the template text is
// neutralised first (see ipxeNeutralize), because the result becomes
// lines of an iPXE script.
func (s *Server) bootContext(in renderInput, forIPXE bool) (*RenderContext, error) {
	ctx := s.newContext(in)
	if forIPXE {
		neutralizeStrings(reflect.ValueOf(ctx).Elem())
	}
	p := in.profile
	kernel, initrds, assets := p.Kernel, p.Initrds, ctx.URLs.Assets
	clean := in.machine != nil && in.machine.Run != nil && in.machine.Run.Clean != ""
	if p.Image != nil || clean {
		// An image profile boots the agent's deploy ramdisk, which writes
		// the image, and so does the clean run that later removes its
		// config drive; it is served next to the machine's assets.
		if in.machine == nil {
			return nil, fmt.Errorf("profile %q deploys an image, which needs a registered machine", p.Name)
		}
		kernel, initrds = imagePlan()
		assets = s.bootURL + "/machines/" + url.PathEscape(in.machine.Name)
	}
	if kernel == "" {
		return nil, fmt.Errorf("profile %q has no kernel (and no ipxe_script or image)", p.Name)
	}
	// Per-machine assets answer only to the run's token, like templates.
	var query string
	if in.machine != nil {
		query = "?token=" + url.QueryEscape(in.token)
	}
	k, err := assetURL(assets, kernel, query)
	if err != nil {
		return nil, fmt.Errorf("profile %q kernel: %w", p.Name, err)
	}
	ctx.Kernel = k
	for _, ird := range initrds {
		u, err := assetURL(assets, ird, query)
		if err != nil {
			return nil, fmt.Errorf("profile %q initrd: %w", p.Name, err)
		}
		ctx.Initrds = append(ctx.Initrds, u)
	}
	if forIPXE {
		ctx.Kernel = ipxeNeutralize(ctx.Kernel)
		for i := range ctx.Initrds {
			ctx.Initrds[i] = ipxeNeutralize(ctx.Initrds[i])
		}
	}
	// The cmdline goes into the boot script, which is served without a
	// token: no secrets (nil source).
	cmd, err := renderText("cmdline", p.Cmdline, ctx, in.snippets, nil)
	if err != nil {
		return nil, fmt.Errorf("profile %q: %w", p.Name, err)
	}
	if err := cmdlineProblem(cmd, ctx); err != nil {
		return nil, fmt.Errorf("profile %q cmdline: %w", p.Name, err)
	}
	// A kernel command line is one line; a line break in the profile text
	// would otherwise start a new iPXE command.
	cmd = strings.Join(strings.Fields(cmd), " ")
	if forIPXE {
		// The profile's own text is as foreign to iPXE as a param: a "#"
		// would comment out the baremetal.* arguments that follow, "||" or
		// ";" would chain a command, "${...}" would expand a setting.
		cmd = ipxeNeutralize(cmd)
	}
	conv := "baremetal.url=" + ctx.URLs.Boot
	switch {
	case clean:
		conv = "baremetal.mode=clean " + conv
	case p.Image != nil:
		conv = "baremetal.mode=deploy " + conv
	}
	if in.machine != nil {
		conv += " baremetal.machine=" + ctx.Machine.Name + " baremetal.token=" + ctx.Token
	} else {
		conv += " baremetal.mac=" + ctx.Machine.MACs[0]
	}
	ctx.Cmdline = strings.TrimSpace(cmd + " " + conv)
	return ctx, nil
}

// agentArgs are the kernel arguments the agent appends; a cmdline that set
// one itself could shadow the agent's for an installer that reads the first.
var agentArgs = []string{"baremetal.url=", "baremetal.machine=", "baremetal.token=", "baremetal.mac="}

// cmdlineProblem refuses a rendered cmdline that sets one of agentArgs, or
// into which a param brought whitespace outside double quotes: a param
// fills in part of one kernel argument, and with a space it could add
// others ("x init=/bin/sh" or a second baremetal.token=). kernelArg quotes
// such a value, which the kernel then reads as one argument.
func cmdlineProblem(cmd string, ctx *RenderContext) error {
	maps := []map[string]string{ctx.Params, ctx.Machine.Params, ctx.Profile.Params, ctx.Site.Params}
	if ctx.Cluster != nil {
		maps = append(maps, ctx.Cluster.Params)
	}
	for _, m := range maps {
		for k, v := range m {
			if strings.ContainsFunc(v, unicode.IsSpace) && unquotedIn(cmd, v) {
				return fmt.Errorf("param %q contains whitespace and would add kernel arguments; a param rendered into the cmdline "+
					"must be one word, or quoted with kernelArg", k)
			}
		}
	}
	for _, w := range strings.Fields(cmd) {
		for _, a := range agentArgs {
			if strings.HasPrefix(w, a) {
				return fmt.Errorf("sets %s, which only the agent sets", strings.TrimSuffix(a, "="))
			}
		}
	}
	return nil
}

// unquotedIn reports whether v occurs in cmd other than wholly inside a
// double-quoted stretch (the kernel's only quoting). A value holding a
// double quote counts as unquoted wherever it occurs: it could close the
// quotes around it.
func unquotedIn(cmd, v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(cmd); {
		j := strings.Index(cmd[i:], v)
		if j < 0 {
			return false
		}
		at := i + j
		inside := strings.Count(cmd[:at], `"`)%2 == 1 && strings.Contains(cmd[at+len(v):], `"`)
		if strings.Contains(v, `"`) || !inside {
			return true
		}
		i = at + 1
	}
	return false
}

// renderIPXE renders the per-machine installer script: the profile's own
// ipxe_script, or the stock ipxe-default.
func (s *Server) renderIPXE(in renderInput) (string, error) {
	text := in.profile.IPXEScript
	if text == "" {
		text = "stock:ipxe-default"
	}
	text, err := resolveTemplateText(text)
	if err != nil {
		return "", fmt.Errorf("profile %q ipxe_script: %w", in.profile.Name, err)
	}
	var ctx *RenderContext
	if in.profile.Kernel == "" && in.profile.IPXEScript != "" {
		ctx = s.newContext(in)
		neutralizeStrings(reflect.ValueOf(ctx).Elem())
	} else if ctx, err = s.bootContext(in, true); err != nil {
		return "", err
	}
	out, err := renderText("ipxe_script", text, ctx, in.snippets, nil)
	if err != nil {
		return "", fmt.Errorf("profile %q: %w", in.profile.Name, err)
	}
	return out, nil
}

// renderTemplate renders the profile's install template name. The bool is
// false when the profile has no such template.
func (s *Server) renderTemplate(in renderInput, name string) (string, bool, error) {
	text, ok := in.profile.Templates[name]
	if !ok && name == "user-data" && in.profile.Image != nil {
		// The config drive of an image always has user-data: the stock
		// one calls back "OS up" from the deployed OS's first boot.
		text, ok = StockPrefix+"cloud-init-image", true
	}
	if !ok {
		return "", false, nil
	}
	text, err := resolveTemplateText(text)
	if err != nil {
		return "", true, fmt.Errorf("profile %q template %q: %w", in.profile.Name, name, err)
	}
	var ctx *RenderContext
	if in.profile.Kernel != "" || in.profile.Image != nil {
		if ctx, err = s.bootContext(in, false); err != nil {
			return "", true, err
		}
	} else {
		ctx = s.newContext(in)
	}
	if err := textParams(ctx); err != nil {
		return "", true, fmt.Errorf("profile %q: %w", in.profile.Name, err)
	}
	out, err := renderText(name, text, ctx, in.snippets, in.secrets)
	if err != nil {
		return "", true, fmt.Errorf("profile %q: %w", in.profile.Name, err)
	}
	return out, true, nil
}

// ipxeNeutralize makes a value inert inside an iPXE script line. iPXE has
// no quoting (core/exec.c): a line is split at whitespace after ${...}
// expansion, and a token that is exactly "||", "&&" or ";" chains another
// command while a token starting with '#' ends the line. So, regardless of
// what surrounds the value in the template:
//   - control characters (CR, LF, ...) become spaces, so no new line starts;
//   - '$' is percent-encoded where it could open an expansion (before '{'
//     or at the value's end, where template text may supply the '{');
//   - a whitespace-separated piece made only of '|', '&' and ';', or one
//     the value ends or starts with, has those characters percent-encoded;
//   - '#' at the start of a piece is percent-encoded.
//
// Encoding (rather than refusing) keeps the machine bootable and makes the
// neutralised text visible in the served script.
func ipxeNeutralize(v string) string {
	if v == "" {
		return v
	}
	b := []byte(v)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = ' '
		}
	}
	var out strings.Builder
	start := 0
	flush := func(piece string) {
		if piece == "" {
			return
		}
		for i := 0; i < len(piece); i++ {
			c := piece[i]
			switch {
			case c == '$' && (i+1 == len(piece) || piece[i+1] == '{'):
				out.WriteString("%24")
			case c == '#' && i == 0:
				out.WriteString("%23")
			case (c == '|' || c == '&' || c == ';') && opEdge(piece, i):
				fmt.Fprintf(&out, "%%%02X", c)
			default:
				out.WriteByte(c)
			}
		}
	}
	for i := 0; i <= len(b); i++ {
		if i == len(b) || b[i] == ' ' {
			flush(string(b[start:i]))
			if i < len(b) {
				out.WriteByte(' ')
			}
			start = i + 1
		}
	}
	return out.String()
}

// opEdge reports whether piece[i] belongs to a run of '|', '&', ';' that
// touches the piece's start or end, where it could merge with neighbouring
// template text or another value into a command separator.
func opEdge(piece string, i int) bool {
	isOp := func(c byte) bool { return c == '|' || c == '&' || c == ';' }
	j := i
	for j > 0 && isOp(piece[j-1]) {
		j--
	}
	if j == 0 {
		return true
	}
	k := i
	for k < len(piece)-1 && isOp(piece[k+1]) {
		k++
	}
	return k == len(piece)-1
}

// neutralizeStrings applies ipxeNeutralize to every settable string, map
// key and value reachable from v (the context is freshly copied per render,
// so nothing shared is modified).
func neutralizeStrings(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		if v.CanSet() {
			v.SetString(ipxeNeutralize(v.String()))
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			neutralizeStrings(v.Elem())
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				neutralizeStrings(v.Field(i))
			}
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			neutralizeStrings(v.Index(i))
		}
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String || v.Type().Elem().Kind() != reflect.String || !v.CanSet() {
			return
		}
		out := reflect.MakeMapWithSize(v.Type(), v.Len())
		iter := v.MapRange()
		for iter.Next() {
			out.SetMapIndex(reflect.ValueOf(ipxeNeutralize(iter.Key().String())).Convert(v.Type().Key()),
				reflect.ValueOf(ipxeNeutralize(iter.Value().String())).Convert(v.Type().Elem()))
		}
		v.Set(out)
	}
}
