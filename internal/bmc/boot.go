package bmc

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/stmcginnis/gofish/schemas"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/backoff"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// BootMode is the firmware path of the next boot
// (BootSourceOverrideMode).
type BootMode string

const (
	BootModeUEFI   BootMode = "UEFI"
	BootModeLegacy BootMode = "Legacy"
	// BootModeKeep ("") keeps the mode the system reports: UEFI stays
	// UEFI, and Legacy is never sent to a system reporting UEFI.
	BootModeKeep BootMode = ""
)

// SetBootOverride points the system's next boot (or every boot, when
// persistent) at t in mode. Target, enabled and mode go in one PATCH (AMI
// requires all three together), with If-Match when the BMC publishes an
// ETag; a 409/412 re-reads the ETag and tries again. The setting is then
// read back: a BMC that accepted it but reports otherwise yields an error
// wrapping ErrOverrideReverted that names the field and what it reverted
// to. A mode the BMC does not list as allowable fails with ErrUnsupported.
func (m *Manager) SetBootOverride(ctx context.Context, c model.BMC, t BootTarget, persistent bool, mode BootMode) error {
	enabled := schemas.OnceBootSourceOverrideEnabled
	if persistent {
		enabled = schemas.ContinuousBootSourceOverrideEnabled
	}
	what := fmt.Sprintf("boot override %s (%s)", t, enabled)
	if mode != BootModeKeep {
		what = fmt.Sprintf("boot override %s (%s, %s)", t, enabled, mode)
	}
	return m.do(ctx, "boot_override", what, c, func(ctx context.Context, tg *target) error {
		return m.setBoot(ctx, tg, c, schemas.BootSource(t), enabled, mode)
	})
}

// desiredMode is the mode to send. A kept mode is UEFI once this endpoint
// was seen in UEFI: a BMC that flipped the mode to Legacy after an earlier
// PATCH (Supermicro, AMI) must not have its revert sent back to it as the
// wish. Otherwise it is what the system reports, so BMCs that reset an
// omitted mode to Legacy do not switch the firmware path either.
func desiredMode(asked BootMode, reported schemas.BootSourceOverrideMode, lk *epLock) schemas.BootSourceOverrideMode {
	if asked != BootModeKeep {
		return schemas.BootSourceOverrideMode(asked)
	}
	if reported == schemas.UEFIBootSourceOverrideMode {
		lk.sawUEFI = true
	}
	if lk.sawUEFI {
		return schemas.UEFIBootSourceOverrideMode
	}
	return reported
}

// allowedModes reads BootSourceOverrideMode@Redfish.AllowableValues, which
// gofish does not parse.
func allowedModes(raw []byte) []string {
	var doc struct {
		Boot struct {
			Modes []string `json:"BootSourceOverrideMode@Redfish.AllowableValues"`
		}
	}
	_ = json.Unmarshal(raw, &doc)
	return doc.Boot.Modes
}

func (m *Manager) setBoot(ctx context.Context, t *target, c model.BMC, src schemas.BootSource, enabled schemas.BootSourceOverrideEnabled, asked BootMode) error {
	var mode schemas.BootSourceOverrideMode
	for attempt := 0; ; attempt++ {
		sys, err := t.system()
		if err != nil {
			return err
		}
		if allowed := sys.Boot.AllowableBootSourceOverrideTargetValues; len(allowed) > 0 && !slices.Contains(allowed, src) {
			return &Error{Msg: fmt.Sprintf("the system does not offer boot target %s (it allows %v)", src, allowed), Err: ErrUnsupported}
		}
		if allowed := allowedModes(sys.RawData); asked != BootModeKeep && len(allowed) > 0 && !slices.Contains(allowed, string(asked)) {
			return &Error{Msg: fmt.Sprintf("the system does not offer boot mode %s (it allows %s)", asked, strings.Join(allowed, ", ")), Err: ErrUnsupported}
		}
		mode = desiredMode(asked, sys.Boot.BootSourceOverrideMode, t.lock)
		err = sys.SetBoot(&schemas.Boot{
			BootSourceOverrideTarget:  src,
			BootSourceOverrideEnabled: enabled,
			BootSourceOverrideMode:    mode,
		})
		if err == nil {
			break
		}
		if s := statusOf(err); (s == http.StatusConflict || s == http.StatusPreconditionFailed) && attempt < m.cfg.MaxRetries {
			m.log.Info("BMC rejected boot override as stale; re-reading", "endpoint", c.Endpoint, "status", s)
			if err := sleepCtx(ctx, backoff.Exponential(m.cfg.RetryBase, m.cfg.RetryMax, attempt)); err != nil {
				return err
			}
			continue
		}
		return err
	}

	sys, err := t.system()
	if err != nil {
		return err
	}
	got := sys.Boot
	var reverted []string
	if got.BootSourceOverrideTarget != src {
		reverted = append(reverted, fmt.Sprintf("BootSourceOverrideTarget to %q (sent %q)", got.BootSourceOverrideTarget, src))
	}
	if got.BootSourceOverrideEnabled != enabled {
		reverted = append(reverted, fmt.Sprintf("BootSourceOverrideEnabled to %q (sent %q)", got.BootSourceOverrideEnabled, enabled))
	}
	if mode != "" && got.BootSourceOverrideMode != "" && got.BootSourceOverrideMode != mode {
		reverted = append(reverted, fmt.Sprintf("BootSourceOverrideMode to %q (sent %q)", got.BootSourceOverrideMode, mode))
	}
	if len(reverted) > 0 {
		m.log.Warn("BMC reverted boot override", "endpoint", c.Endpoint, "target", src, "enabled", enabled, "mode", mode,
			"reported_target", got.BootSourceOverrideTarget, "reported_enabled", got.BootSourceOverrideEnabled,
			"reported_mode", got.BootSourceOverrideMode)
		return &Error{Msg: "the BMC accepted the override but reverted " + strings.Join(reverted, ", "), Err: ErrOverrideReverted}
	}
	m.log.Info("BMC boot override set", "endpoint", c.Endpoint, "target", src, "enabled", enabled, "mode", mode)
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
