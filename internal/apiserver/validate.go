package apiserver

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/endpoint"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// Validation answers 422 with the offending field. Each function checks the
// request on its own first and then its references, so a typo is reported
// before a missing object.

func validateName(name string) error {
	if name == "" {
		return invalid("name", "name is required")
	}
	if !model.ValidName(name) {
		return invalid("name", "name %q is not valid: %s", name, model.NameRule)
	}
	return nil
}

// nameFor reconciles the body's name with the URL's on PUT: the body may
// omit it, but must not name another object.
func nameFor(body, path string) (string, error) {
	if body != "" && body != path {
		return "", invalid("name", "name %q in the body differs from %q in the URL; objects cannot be renamed", body, path)
	}
	return path, nil
}

func validateParams(field string, params map[string]string) error { //nolint:unparam // the field its errors name is spelled out at each call
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if strings.TrimSpace(k) == "" {
			return invalid(field, "%s keys must not be empty", field)
		}
	}
	return nil
}

// maxSecretBytes bounds one secret param's value: room for a certificate
// chain or a key, not a payload.
const maxSecretBytes = 64 << 10

// validateSecretParams checks the secret params a request gives (nil:
// none given, the stored ones stay). Errors name the key, never a value.
func validateSecretParams(field string, params *map[string]string) error { //nolint:unparam // as validateParams
	if params == nil {
		return nil
	}
	for _, k := range model.Secrets(*params).Names() {
		if !model.SecretNameRE.MatchString(k) {
			return invalid(field, "%s key %q: a secret's name is 1 to 63 letters, digits, '_', '.' or '-', not starting with '.' or '-'", field, k)
		}
		if len((*params)[k]) > maxSecretBytes {
			return invalid(field, "%s %q is longer than %d bytes", field, k, maxSecretBytes)
		}
	}
	return nil
}

type validMachine struct {
	req   *api.MachineRequest
	macs  []string
	state model.DesiredState
}

// validateMachine checks a machine request. existing is nil on create.
func (s *Server) validateMachine(ctx context.Context, req *api.MachineRequest, existing *model.Machine) (*validMachine, error) {
	if err := validateName(req.Name); err != nil {
		return nil, err
	}
	if err := validateBMC(&req.BMC, existing == nil); err != nil {
		return nil, err
	}
	v := &validMachine{req: req, macs: []string{}}
	seen := map[string]int{}
	for i, raw := range req.MACs {
		mac, err := model.NormalizeMAC(raw)
		if err != nil {
			return nil, invalid(fmt.Sprintf("macs[%d]", i), "%v", err)
		}
		if j, dup := seen[mac]; dup {
			return nil, invalid(fmt.Sprintf("macs[%d]", i), "mac %s is listed twice (macs[%d] and macs[%d])", mac, j, i)
		}
		seen[mac] = i
		v.macs = append(v.macs, mac)
	}
	v.state = model.StateProvisioned
	if req.State != "" {
		if !slices.Contains(api.DesiredStates, req.State) {
			return nil, invalid("state", "state %q is not one of %s", req.State, strings.Join(api.Strings(api.DesiredStates), ", "))
		}
		v.state = model.DesiredState(req.State)
	}
	if err := validateHints("root_device", req.RootDevice); err != nil {
		return nil, err
	}
	if req.BootMode != "" && !slices.Contains(api.BootModes, req.BootMode) {
		return nil, invalid("boot_mode", "boot_mode %q is not one of %s", req.BootMode, strings.Join(api.Strings(api.BootModes), ", "))
	}
	// A new machine's BMC is read after it is stored; the reconciler then
	// refuses the mode the same way, before any boot is set up.
	if existing != nil {
		if why := model.BootModeRefusal(model.BootMode(req.BootMode), existing.Status.Inventory); why != "" {
			return nil, invalid("boot_mode", "%s", why)
		}
	}
	if err := validateSecretParams("secret_params", req.SecretParams); err != nil {
		return nil, err
	}
	if err := validateParams("params", req.Params); err != nil {
		return nil, err
	}
	if req.BootProfile != "" {
		if !model.ValidName(req.BootProfile) {
			return nil, invalid("boot_profile", "boot_profile %q is not a valid name: %s", req.BootProfile, model.NameRule)
		}
		if _, err := s.store.GetProfile(ctx, req.BootProfile); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil, invalid("boot_profile", "boot profile %q does not exist; create it first", req.BootProfile)
			}
			return nil, err
		}
	}
	// A provisioned machine without a boot_profile is accepted: Terraform
	// creates a cluster's machines before the cluster that gives them their
	// role's profile. Until then the reconciler reports the missing profile
	// in the machine's last_error.
	for i, mac := range v.macs {
		other, err := s.store.MachineByMAC(ctx, mac)
		switch {
		case err == nil && other.Name != req.Name:
			return nil, &apiError{status: 409, code: api.CodeConflict, field: fmt.Sprintf("macs[%d]", i),
				message: fmt.Sprintf("mac %s is registered to machine %q", mac, other.Name), cause: store.ErrMACInUse}
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
	}
	return v, nil
}

func validateBMC(b *api.BMCRequest, create bool) error {
	if b.Endpoint == "" {
		return invalid("bmc.endpoint", "bmc.endpoint is required (https://host[:port] or a Redfish system URL)")
	}
	// The BMC client's own rule, so an endpoint accepted here is one it can
	// use. Its errors never quote the endpoint, which may hold a password.
	if _, err := endpoint.ParseBMC(b.Endpoint); err != nil {
		return invalid("bmc.endpoint", "bmc.%s", err)
	}
	if strings.TrimSpace(b.Username) == "" {
		return invalid("bmc.username", "bmc.username is required")
	}
	if create && b.Password == "" {
		return invalid("bmc.password", "bmc.password is required when a machine is created")
	}
	if b.CACertPEM != "" {
		if err := validateCAPEM(b.CACertPEM); err != nil {
			return invalid("bmc.ca_cert_pem", "bmc.ca_cert_pem: %v", err)
		}
	}
	return nil
}

func validateCAPEM(s string) error {
	rest := []byte(s)
	n := 0
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return fmt.Errorf("PEM block %d is a %q, want CERTIFICATE", n+1, blk.Type)
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return fmt.Errorf("certificate %d: %v", n+1, err)
		}
		n++
	}
	if n == 0 {
		return errors.New("no PEM CERTIFICATE block found")
	}
	return nil
}

// templateNameRE keeps template names usable as one URL path segment and
// file name: no separators, no dot-only names.
var templateNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

func (s *Server) validateProfile(ctx context.Context, req *api.BootProfileRequest) error {
	if err := validateName(req.Name); err != nil {
		return err
	}
	if strings.TrimSpace(req.Kernel) == "" && strings.TrimSpace(req.IPXEScript) == "" && req.Image == nil {
		return invalid("kernel", "a boot profile needs a kernel (with optional initrds and cmdline), an ipxe_script or an image")
	}
	if req.Image != nil {
		if req.Kernel != "" || req.IPXEScript != "" || len(req.Initrds) > 0 {
			return invalid("image", "a boot profile with an image boots the agent's deploy ramdisk: leave kernel, initrds and ipxe_script out")
		}
		if err := validateImage(req.Image); err != nil {
			return err
		}
		if req.WipeProfile != "" {
			return invalid("wipe_profile", "a boot profile with an image is cleaned by the agent's deploy ramdisk on deprovision: set image.wipe (config-drive, metadata or full) instead of wipe_profile")
		}
	}
	if err := validateHints("root_device", req.RootDevice); err != nil {
		return err
	}
	if req.IPXEScript != "" && !strings.HasPrefix(req.IPXEScript, api.IPXEScriptMagic) {
		return invalid("ipxe_script", "an ipxe_script must start with %q on its first line (iPXE does not run it as a script otherwise)", api.IPXEScriptMagic)
	}
	for i, initrd := range req.Initrds {
		if strings.TrimSpace(initrd) == "" {
			return invalid(fmt.Sprintf("initrds[%d]", i), "initrds entries must not be empty")
		}
	}
	names := make([]string, 0, len(req.Templates))
	for name := range req.Templates {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !templateNameRE.MatchString(name) {
			return invalid("templates."+name, "template name %q must be 1-128 letters, digits, '.', '_' or '-', not starting with '.' or '-'", name)
		}
	}
	if err := validateSecretParams("secret_params", req.SecretParams); err != nil {
		return err
	}
	if err := validateParams("params", req.Params); err != nil {
		return err
	}
	if req.WipeProfile != "" {
		if !model.ValidName(req.WipeProfile) {
			return invalid("wipe_profile", "wipe_profile %q is not a valid name: %s", req.WipeProfile, model.NameRule)
		}
		if req.WipeProfile != req.Name {
			if _, err := s.store.GetProfile(ctx, req.WipeProfile); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return invalid("wipe_profile", "wipe profile %q does not exist; create it first", req.WipeProfile)
				}
				return err
			}
		}
	}
	return nil
}

// validateCluster checks a cluster request and returns its members' machines.
func (s *Server) validateCluster(ctx context.Context, req *api.ClusterRequest) (map[string]*model.Machine, error) {
	if err := validateName(req.Name); err != nil {
		return nil, err
	}
	roles := map[string]bool{}
	for i, r := range req.Roles {
		field := fmt.Sprintf("roles[%d]", i)
		if !model.ValidName(r.Name) {
			return nil, invalid(field+".name", "role name %q is not valid: %s", r.Name, model.NameRule)
		}
		if roles[r.Name] {
			return nil, invalid(field+".name", "role %q is listed twice", r.Name)
		}
		roles[r.Name] = true
		if r.BootProfile == "" {
			return nil, invalid(field+".boot_profile", "role %q needs a boot_profile", r.Name)
		}
		if !model.ValidName(r.BootProfile) {
			return nil, invalid(field+".boot_profile", "boot_profile %q is not a valid name: %s", r.BootProfile, model.NameRule)
		}
	}
	if req.Rollout != nil && req.Rollout.MaxUnavailable < 0 {
		return nil, invalid("rollout.max_unavailable", "rollout.max_unavailable must not be negative (0 or unset means 1)")
	}
	if err := validateSecretParams("secret_params", req.SecretParams); err != nil {
		return nil, err
	}
	if err := validateParams("params", req.Params); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i, mem := range req.Members {
		field := fmt.Sprintf("members[%d]", i)
		if !model.ValidName(mem.Machine) {
			return nil, invalid(field+".machine", "machine name %q is not valid: %s", mem.Machine, model.NameRule)
		}
		if seen[mem.Machine] {
			return nil, invalid(field+".machine", "machine %q is a member twice", mem.Machine)
		}
		seen[mem.Machine] = true
		if !roles[mem.Role] {
			return nil, invalid(field+".role", "role %q of member %q is not one of the cluster's roles", mem.Role, mem.Machine)
		}
	}
	for i, r := range req.Roles {
		if _, err := s.store.GetProfile(ctx, r.BootProfile); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil, invalid(fmt.Sprintf("roles[%d].boot_profile", i), "boot profile %q of role %q does not exist; create it first", r.BootProfile, r.Name)
			}
			return nil, err
		}
	}
	machines := map[string]*model.Machine{}
	for i, mem := range req.Members {
		field := fmt.Sprintf("members[%d].machine", i)
		m, err := s.store.GetMachine(ctx, mem.Machine)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil, invalid(field, "machine %q does not exist; create it first", mem.Machine)
			}
			return nil, err
		}
		if m.Cluster != "" && m.Cluster != req.Name {
			other, err := s.memberOf(ctx, m)
			if err != nil {
				return nil, err
			}
			if other != "" {
				return nil, invalid(field, "machine %q is already a member of cluster %q; remove it there first", mem.Machine, other)
			}
		}
		if !m.DeletionRequested.IsZero() {
			return nil, invalid(field, "machine %q is being deleted", mem.Machine)
		}
		machines[m.Name] = m
	}
	return machines, nil
}

var checksumRE = regexp.MustCompile(`^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$`)

// validateImage refuses what the deploy ramdisk could not write safely: an
// image without a checksum it can verify, or in a format it cannot write.
func validateImage(img *api.Image) error {
	u := strings.TrimSpace(img.URL)
	switch {
	case u == "":
		return invalid("image.url", "image.url is required: an http(s) URL or a path under the agent's assets directory")
	case strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://"):
		if _, err := url.Parse(u); err != nil {
			return invalid("image.url", "image.url %q is not a URL: %v", u, err)
		}
	default:
		for _, seg := range strings.Split(strings.TrimPrefix(u, "/"), "/") {
			if seg == "" || seg == "." || seg == ".." {
				return invalid("image.url", "image.url %q must be an http(s) URL or a relative path inside the assets directory", u)
			}
		}
	}
	if !checksumRE.MatchString(img.Checksum) {
		return invalid("image.checksum", "image.checksum must be sha256:<64 hex digits> or sha512:<128 hex digits> (lower case) of the file at image.url, e.g. from sha256sum")
	}
	if !slices.Contains(api.ImageFormats, img.Format) {
		return invalid("image.format", "image.format %q is not one of %s (other formats, vmdk or vhdx say, convert with: qemu-img convert -O raw in.img out.raw)", img.Format, strings.Join(api.ImageFormats, ", "))
	}
	if img.Wipe != "" && !slices.Contains(api.ImageWipes, img.Wipe) {
		return invalid("image.wipe", "image.wipe %q is not one of %s: what deprovisioning erases (the config drive is always removed)", img.Wipe, strings.Join(api.ImageWipes, ", "))
	}
	return nil
}

func validateHints(field string, h *api.RootDeviceHints) error {
	if h == nil {
		return nil
	}
	switch {
	case h.MinSizeGiB < 0 || h.MaxSizeGiB < 0:
		return invalid(field, "%s sizes must not be negative", field)
	case h.MaxSizeGiB > 0 && h.MinSizeGiB > h.MaxSizeGiB:
		return invalid(field+".min_size_gib", "%s.min_size_gib (%g) is above max_size_gib (%g): no disk could match", field, h.MinSizeGiB, h.MaxSizeGiB)
	case strings.ContainsAny(strings.TrimPrefix(h.Name, "/dev/"), "/ "):
		return invalid(field+".name", "%s.name %q must be a disk's kernel name such as sda or /dev/nvme0n1", field, h.Name)
	}
	return nil
}
