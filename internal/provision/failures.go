package provision

import (
	"context"
	"errors"
	"fmt"

	"net"
	"net/http"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/backoff"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/bmc"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/endpoint"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// recordBMCStatus writes bmc_status outside any step's commit: the call
// that tells it may be followed by a status write on another basis.
func (r *Reconciler) recordBMCStatus(ctx context.Context, name, status string) {
	now := r.cfg.Now()
	_, err := r.writeStatus(ctx, name, statusWrite{
		lock: lockNone,
		guard: func(x *model.Machine) error {
			if x.Status.BMCStatus == status {
				return errStale
			}
			return nil
		},
		apply: func(x *model.Machine) (bool, []model.Event, error) {
			setBMCStatus(x, status, now)
			return false, nil, nil
		},
	})
	if err != nil && !errors.Is(err, errStale) && !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
		r.log.Error("recording bmc_status failed", "machine", name, "err", err)
	}
}

// setBMCStatus records how the BMC answered, keeping the time since when
// the status is unchanged.
func setBMCStatus(x *model.Machine, status string, now time.Time) {
	if x.Status.BMCStatus != status {
		x.Status.BMCStatus, x.Status.BMCStatusSince = status, now
	}
}

// bmcHealth classifies a BMC call's failure for bmc_status: a refused
// login or access, a BMC that does not answer, or ok for a BMC that
// answered with some other error.
func bmcHealth(err error) string {
	var be *bmc.Error
	if errors.As(err, &be) && (be.StatusCode == http.StatusUnauthorized || be.StatusCode == http.StatusForbidden) {
		return model.BMCStatusAuthFailed
	}
	var ne net.Error
	switch {
	case errors.Is(err, bmc.ErrUnsupported), errors.Is(err, bmc.ErrOverrideReverted):
		return model.BMCStatusOK
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne):
		return model.BMCStatusUnreachable
	case be != nil && be.StatusCode == 0:
		// No HTTP answer at all: refused connection, DNS, TLS.
		return model.BMCStatusUnreachable
	case be != nil && (be.StatusCode == http.StatusBadGateway || be.StatusCode == http.StatusServiceUnavailable || be.StatusCode == http.StatusGatewayTimeout):
		return model.BMCStatusUnreachable
	}
	return model.BMCStatusOK
}

// credentialsHint ends a message about a BMC that refuses the agent's
// login with what fixes it.
const credentialsHint = "; the BMC refuses the configured credentials: set the right bmc.password (with password_wo, bump password_wo_version) and apply"

// bmcUnhealthy records a failed BMC call of a settled machine (power poll,
// inventory re-read): bmc_status and last_error say what the BMC did, so
// the next plan shows it; the machine's phase is left alone. The write is
// skipped when it would change nothing, unless a spec version is waiting
// to be acknowledged.
func (r *Reconciler) bmcUnhealthy(ctx context.Context, m *model.Machine, msg string, err error) {
	health := bmcHealth(err)
	if health == model.BMCStatusAuthFailed {
		msg += credentialsHint
	}
	r.log.Warn("BMC call of a settled machine failed", "machine", m.Name, "err", msg)
	if m.Status.BMCStatus == health && m.Status.LastError == msg && m.Version <= m.Status.ObservedVersion {
		return
	}
	var evs []model.Event
	if m.Status.LastError != msg {
		evs = append(evs, model.Event{Type: model.EventError, Message: msg, Data: map[string]string{"bmc_status": health}})
	}
	now := r.cfg.Now()
	r.commit(ctx, m, func(x *model.Machine) {
		setBMCStatus(x, health, now)
		x.Status.LastError = msg
	}, evs...)
}

func (r *Reconciler) stepFailed(ctx context.Context, m *model.Machine, what string, timeout time.Duration, err error) {
	label := string(m.Status.Step)
	if label == "" {
		label = string(m.Status.Phase)
	}
	r.met.bmcErrors.WithLabelValues(label).Inc()
	key := fmt.Sprintf("%s/%s/%s", m.Status.Phase, m.Status.Step, runID(m))
	r.mu.Lock()
	s := r.stateOf(m.Name)
	if s.failure.key != key {
		s.failure = failure{key: key}
	}
	s.failure.n++
	f := s.failure
	r.mu.Unlock()

	msg := describeBMCError(m.BMC.Endpoint, err, timeout) + " while " + what
	health := bmcHealth(err)
	if health == model.BMCStatusAuthFailed {
		msg += credentialsHint
	}
	if health != m.Status.BMCStatus {
		r.recordBMCStatus(ctx, m.Name, health)
	}
	retries := r.cfg.Timeouts.Retries
	// A full session table empties as sessions expire: waiting, however
	// long, beats failing a machine nothing is wrong with.
	waiting := errors.Is(err, bmc.ErrSessionLimit)
	if f.n > retries && !waiting {
		r.mu.Lock()
		r.stateOf(m.Name).failure = failure{}
		r.mu.Unlock()
		full := fmt.Sprintf("%s; retried %d times", msg, retries)
		r.log.Warn("BMC step failed for good", "machine", m.Name, "err", full)
		r.transition(ctx, m, fail(full))
		return
	}
	d := backoff.Exponential(r.cfg.RetryBase, r.cfg.RetryMax, f.n-1)
	now := r.cfg.Now()
	r.mu.Lock()
	r.stateOf(m.Name).notBefore = now.Add(d)
	r.mu.Unlock()
	retryMsg := fmt.Sprintf("%s; retry %d of %d in %s", msg, f.n, retries, d.Round(time.Millisecond))
	if waiting {
		retryMsg = fmt.Sprintf("%s; waiting, try %d in %s", msg, f.n+1, d.Round(time.Millisecond))
	}
	r.log.Warn("BMC step failed; retrying", "machine", m.Name, "err", retryMsg)
	r.commit(ctx, m, func(x *model.Machine) { x.Status.LastError = retryMsg },
		model.Event{Type: model.EventError, Message: retryMsg})
	r.q.addAfter(m.Name, d)
}

// describeBMCError makes sure the message names the BMC (the bmc package's
// errors do; others get the endpoint, without any userinfo, prefixed).
func describeBMCError(ep string, err error, timeout time.Duration) string {
	s := err.Error()
	var be *bmc.Error
	if !errors.As(err, &be) {
		s = "BMC " + endpoint.Display(ep) + ": " + s
	}
	if errors.Is(err, context.DeadlineExceeded) {
		s += fmt.Sprintf(" (no answer within %s)", timeout)
	}
	return s
}
