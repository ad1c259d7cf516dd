package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// An image deploy has two callbacks on one run token: the deploy ramdisk's
// "image written" (which moves the run on but leaves the token alive) and
// the deployed OS's (which ends the run like an installer's). Between them
// the agent boots the machine from its disk (opRebootToOS).

// DeployDisks takes the disks a deploy ramdisk found and answers with the
// one to write (boot.Lifecycle). The choice is the machine's: its root
// device hints, else its profile's.
func (r *Reconciler) DeployDisks(ctx context.Context, machine, token string, disks []model.SeenDisk) (model.DeployTarget, error) {
	wl := r.writeLock(machine)
	wl.Lock()
	defer wl.Unlock()
	var out model.DeployTarget
	var reject, refused string
	now := r.cfg.Now()
	// The profile is read before the write, not inside it; the write then
	// checks that the run is still the one the profile was read for.
	var p *model.BootProfile
	var runID string
	cur, err := r.st.GetMachine(ctx, machine)
	if err == nil && cur.Run != nil {
		runID = cur.Run.ID
		p, err = r.st.GetProfile(ctx, cur.Run.Profile)
		switch {
		case errors.Is(err, store.ErrNotFound):
			refused = fmt.Sprintf("boot profile %q of run %s no longer exists", cur.Run.Profile, cur.Run.ID)
			err = nil
		case err == nil && p.Image == nil && cur.Run.Clean == "":
			refused = fmt.Sprintf("boot profile %q has no image, but the machine booted the deploy ramdisk", p.Name)
		}
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return out, fmt.Errorf("reading machine %s: %w", machine, err)
	}
	_, err = r.writeStatus(ctx, machine, statusWrite{lock: lockHeld, guard: func(m *model.Machine) error {
		if reject = tokenProblem(m, token); reject != "" {
			return errRejected
		}
		if m.Run.ID != runID {
			reject = "the machine's run changed"
			return errRejected
		}
		if m.Run.Deploy != nil && !m.Run.Deploy.WrittenAt.IsZero() {
			reject = "the image of this run is already written"
			return errRejected
		}
		return nil
	}, apply: func(m *model.Machine) (bool, []model.Event, error) {
		if refused == "" {
			// A clean run finds the disk the image went to the way the
			// deploy chose it: the same hints, the same rule.
			hints := p.RootDevice
			if m.RootDevice != nil {
				hints = m.RootDevice
			}
			d, err := chooseRootDisk(hints, disks, 0)
			switch {
			case err != nil:
				refused = fmt.Sprintf("run %s: %v", m.Run.ID, err)
			case m.Run.Clean != "":
				out = model.DeployTarget{Disk: d, Profile: p.Name, Wipe: m.Run.Clean}
			default:
				out = model.DeployTarget{Disk: d, Image: *p.Image, Profile: p.Name}
			}
		}
		seen := make([]string, 0, len(disks))
		for _, d := range disks {
			seen = append(seen, describeDisk(d))
		}
		data := map[string]string{"run": m.Run.ID, "disks": strings.Join(seen, "; ")}
		if refused != "" {
			f := fail(refused)
			setPhase(m, f.Phase, f.Step, now)
			m.Status.LastError = f.Reason
			m.Run.TokenUsed = true
			return false, []model.Event{
				{Type: string(model.SignalDeployDisks), Phase: m.Status.Phase, Message: "deploy ramdisk reported its disks", Data: data},
				{Type: model.EventPhaseChanged, Phase: model.PhaseFailed, Message: refused},
			}, nil
		}
		if m.Run.Clean != "" {
			data["disk"], data["wipe"] = out.Disk.Name, out.Wipe
			if !m.Run.AddStep(model.BootStep{Signal: model.SignalDeployDisks, At: now}) {
				return false, nil, nil
			}
			return false, []model.Event{{Type: string(model.SignalDeployDisks), Phase: m.Status.Phase, Step: m.Status.Step,
				Message: fmt.Sprintf("cleaning %s (wipe %s)", describeDisk(out.Disk), out.Wipe), Data: data}}, nil
		}
		if d := m.Run.Deploy; d != nil && d.Disk == out.Disk.Name {
			// The ramdisk asks again while the agent converts a qcow2
			// image: the same answer, nothing new to record.
			return false, nil, nil
		}
		data["disk"] = out.Disk.Name
		m.Run.Deploy = &model.Deploy{Disk: out.Disk.Name, Wipe: orDefault(p.Image.Wipe, model.WipeConfigDrive)}
		m.Run.AddStep(model.BootStep{Signal: model.SignalDeployDisks, At: now})
		return false, []model.Event{{Type: string(model.SignalDeployDisks), Phase: m.Status.Phase, Step: m.Status.Step,
			Message: fmt.Sprintf("writing the image to %s", describeDisk(out.Disk)), Data: data}}, nil
	}})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return out, fmt.Errorf("%w: no machine %q", model.ErrTokenRejected, machine)
	case errors.Is(err, errRejected):
		r.appendEvent(ctx, model.Event{Machine: machine, Type: string(model.SignalCallbackRejected), Message: "deploy ramdisk refused: " + reject})
		return out, fmt.Errorf("%w: %s", model.ErrTokenRejected, reject)
	case err != nil:
		return out, fmt.Errorf("recording the disks of machine %s: %w", machine, err)
	}
	r.q.add(machine)
	if refused != "" {
		return out, fmt.Errorf("%w: %s", model.ErrDeployRefused, refused)
	}
	return out, nil
}

// DeployProgress records how far a deploy ramdisk's write is: the run's
// boot steps gain one per GiB written, with an event carrying the bytes
// and the throughput so far, so operators see the write move and a slow
// write is not taken for a stalled boot.
func (r *Reconciler) DeployProgress(ctx context.Context, machine, token string, written int64, elapsed time.Duration) error {
	wl := r.writeLock(machine)
	wl.Lock()
	defer wl.Unlock()
	now := r.cfg.Now()
	var reject string
	_, err := r.writeStatus(ctx, machine, statusWrite{lock: lockHeld, guard: func(m *model.Machine) error {
		if reject = tokenProblem(m, token); reject != "" {
			return errRejected
		}
		if d := m.Run.Deploy; d == nil || !d.WrittenAt.IsZero() || written <= d.BytesWritten {
			return errStale
		}
		return nil
	}, apply: func(m *model.Machine) (bool, []model.Event, error) {
		d := m.Run.Deploy
		d.BytesWritten = written
		step := model.BootStep{Signal: model.SignalDeployProgress, Name: fmt.Sprint(written / gib), At: now}
		if !m.Run.AddStep(step) {
			return false, nil, nil
		}
		data := map[string]string{"run": m.Run.ID, "disk": d.Disk, "bytes_written": fmt.Sprint(written)}
		msg := fmt.Sprintf("%.1f GiB written to %s", float64(written)/gib, d.Disk)
		if elapsed > 0 {
			rate := float64(written) / (1 << 20) / elapsed.Seconds()
			data["mib_per_s"] = fmt.Sprintf("%.1f", rate)
			msg += fmt.Sprintf(" (%.1f MiB/s)", rate)
		}
		return false, []model.Event{{Type: string(model.SignalDeployProgress), Phase: m.Status.Phase, Step: m.Status.Step, Message: msg, Data: data}}, nil
	}})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: no machine %q", model.ErrTokenRejected, machine)
	case errors.Is(err, errRejected):
		return fmt.Errorf("%w: %s", model.ErrTokenRejected, reject)
	case errors.Is(err, errStale):
		return nil
	case err != nil:
		return err
	}
	r.q.add(machine)
	return nil
}

// imageWritten carries out a deploy ramdisk's "image written" report
// (decideCallback's callbackImageWritten plan p).
func imageWritten(m *model.Machine, report model.CallbackReport, p plan, now time.Time) []model.Event {
	d := m.Run.Deploy
	m.Status.Addresses = cleanAddresses(report.Addresses)
	data := map[string]string{"run": m.Run.ID, "disk": printable(orDash(report.Disk), 64), "status": orDash(printable(report.Status, 32))}
	if report.BytesWritten > 0 {
		data["bytes_written"] = fmt.Sprint(report.BytesWritten)
	}
	if report.DurationMS > 0 {
		data["duration_ms"] = fmt.Sprint(report.DurationMS)
	}
	if p.Fail {
		setPhase(m, p.Phase, p.Step, now)
		m.Status.LastError = p.Reason
		m.Run.TokenUsed = true
		return []model.Event{
			{Type: model.EventImageWritten, Phase: m.Status.Phase, Message: "deploy ramdisk reported failure", Data: data},
			{Type: model.EventPhaseChanged, Phase: p.Phase, Message: p.Reason},
		}
	}
	d.WrittenAt = now
	m.Status.CleanPending = orDefault(d.Wipe, model.WipeConfigDrive)
	if report.BytesWritten > d.BytesWritten {
		d.BytesWritten = report.BytesWritten
	}
	m.Status.LastError = ""
	setPhase(m, p.Phase, p.Step, now)
	m.Run.StepDeadline = time.Time{}
	return []model.Event{
		{Type: model.EventImageWritten, Phase: m.Status.Phase, Step: m.Status.Step, Message: imageWrittenMessage(report), Data: data},
		{Type: model.EventPhaseChanged, Phase: m.Status.Phase, Step: m.Status.Step, Message: p.Reason},
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// cleanCallback ends a clean run: its ramdisk's report, ok or not, is
// the run's one callback (decideCallback's callbackClean plan p).
func cleanCallback(m *model.Machine, report model.CallbackReport, p plan, now time.Time) []model.Event {
	r := m.Run
	r.TokenUsed = true
	r.CallbackAt = now
	r.AddStep(model.BootStep{Signal: model.SignalCallbackReceived, At: now})
	data := map[string]string{"run": r.ID, "wipe": r.Clean, "disk": printable(orDash(report.Disk), 64), "status": orDash(printable(report.Status, 32))}
	if p.Fail {
		setPhase(m, p.Phase, p.Step, now)
		m.Status.LastError = p.Reason
		return []model.Event{
			{Type: string(model.SignalCallbackReceived), Phase: m.Status.Phase, Message: "deploy ramdisk reported the clean failed", Data: data},
			{Type: model.EventPhaseChanged, Phase: p.Phase, Message: p.Reason},
		}
	}
	m.Status.CleanPending = ""
	m.Status.LastError = ""
	setPhase(m, p.Phase, p.Step, now)
	return []model.Event{
		{Type: string(model.SignalCallbackReceived), Phase: m.Status.Phase, Step: m.Status.Step, Message: cleanedMessage(r, report), Data: data},
		{Type: model.EventPhaseChanged, Phase: m.Status.Phase, Step: m.Status.Step, Message: p.Reason},
	}
}
