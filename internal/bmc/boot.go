package bmc

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/stmcginnis/gofish/schemas"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// SetBootOverride points the system's next boot (or every boot, when
// persistent) at t. Target, enabled and the system's current boot mode go in
// one PATCH, with If-Match when the BMC publishes an ETag; a 409/412 re-reads
// the ETag and tries again. The setting is then read back: a BMC that
// accepted it but reports otherwise yields an error wrapping
// ErrOverrideReverted.
func (m *Manager) SetBootOverride(ctx context.Context, c model.BMC, t BootTarget, persistent bool) error {
	enabled := schemas.OnceBootSourceOverrideEnabled
	if persistent {
		enabled = schemas.ContinuousBootSourceOverrideEnabled
	}
	what := fmt.Sprintf("boot override %s (%s)", t, enabled)
	return m.do(ctx, "boot_override", what, c, func(ctx context.Context, tg *target) error {
		return m.setBoot(ctx, tg, c, schemas.BootSource(t), enabled)
	})
}

func (m *Manager) setBoot(ctx context.Context, t *target, c model.BMC, src schemas.BootSource, enabled schemas.BootSourceOverrideEnabled) error {
	var mode schemas.BootSourceOverrideMode
	for attempt := 0; ; attempt++ {
		sys, err := t.system()
		if err != nil {
			return err
		}
		if allowed := sys.Boot.AllowableBootSourceOverrideTargetValues; len(allowed) > 0 && !slices.Contains(allowed, src) {
			return &Error{Msg: fmt.Sprintf("the system does not offer boot target %s (it allows %v)", src, allowed), Err: ErrUnsupported}
		}
		// Sending the mode the system already uses keeps BMCs that reset an
		// omitted mode to Legacy (seen on several) from switching a UEFI
		// machine's firmware path.
		mode = sys.Boot.BootSourceOverrideMode
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
			if err := sleepCtx(ctx, backoff(m.cfg.RetryBase, m.cfg.RetryMax, attempt)); err != nil {
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
	if got.BootSourceOverrideTarget != src || got.BootSourceOverrideEnabled != enabled ||
		(mode != "" && got.BootSourceOverrideMode != "" && got.BootSourceOverrideMode != mode) {
		m.log.Warn("BMC reverted boot override", "endpoint", c.Endpoint, "target", src, "enabled", enabled,
			"reported_target", got.BootSourceOverrideTarget, "reported_enabled", got.BootSourceOverrideEnabled)
		return &Error{Msg: fmt.Sprintf("the BMC accepted the override but reports target %q, enabled %q",
			got.BootSourceOverrideTarget, got.BootSourceOverrideEnabled), Err: ErrOverrideReverted}
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
