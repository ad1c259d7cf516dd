package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"
)

// ResetTypes are the ComputerSystem.Reset types every lab system accepts.
var ResetTypes = []string{"On", "ForceOn", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "PowerCycle", "Nmi"}

// defaultGracefulDelay is how long a memory-backend GracefulShutdown
// takes, so clients have to wait for the power state as on real servers.
const defaultGracefulDelay = 100 * time.Millisecond

// backend is what actually powers machines on and off.
type backend interface {
	// start powers s on with boot in effect. s.opMu is held, s.mu is not.
	start(s *System, boot BootOverride) error
	// stop powers s off at once. s.opMu is held, s.mu is not.
	stop(s *System) error
	close() error
}

// reset carries out a ComputerSystem.Reset action.
func (s *System) reset(resetType string) error {
	s.mu.Lock()
	ignore := s.fault.IgnorePower
	s.mu.Unlock()
	if ignore {
		s.lab.log.Info("lab: power action ignored (fault)", "system", s.name, "reset_type", resetType)
		return nil
	}

	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	s.powerGen++
	gen := s.powerGen
	was := s.power
	s.mu.Unlock()
	on := was == "On"
	s.lab.log.Info("lab: power action", "system", s.name, "reset_type", resetType, "was", was)

	switch resetType {
	case "On", "ForceOn":
		if on {
			return nil
		}
		return s.powerOn()
	case "ForceOff":
		if !on {
			return nil
		}
		return s.lab.backend.stop(s)
	case "GracefulShutdown":
		if !on {
			return nil
		}
		if s.lab.cfg.Backend == BackendQEMU {
			// The VMs have no monitor to send an ACPI event through.
			return s.lab.backend.stop(s)
		}
		s.lab.wg.Add(1)
		go s.delayedShutdown(gen)
		return nil
	case "GracefulRestart", "ForceRestart", "PowerCycle":
		if on {
			if err := s.lab.backend.stop(s); err != nil {
				return err
			}
		}
		return s.powerOn()
	case "Nmi":
		return nil
	}
	return fmt.Errorf("unsupported reset type %q", resetType)
}

// powerOn consumes a Once override, as firmware does when it boots, and
// starts the machine. s.opMu is held.
func (s *System) powerOn() error {
	s.mu.Lock()
	boot := s.boot
	if boot.Enabled == "Once" {
		s.boot.Target = "None"
		s.boot.Enabled = "Disabled"
	}
	s.powerOns++
	s.lastReset = time.Now()
	s.mu.Unlock()
	return s.lab.backend.start(s, boot)
}

func (s *System) delayedShutdown(gen uint64) {
	defer s.lab.wg.Done()
	t := time.NewTimer(s.lab.gracefulDelay)
	defer t.Stop()
	select {
	case <-s.lab.ctx.Done():
		return
	case <-t.C:
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.mu.Lock()
	current := s.powerGen == gen
	s.mu.Unlock()
	if current { // no other power action came in between
		_ = s.lab.backend.stop(s)
	}
}

// pxeBoots reports whether a power-on with boot goes to the network.
func pxeBoot(boot BootOverride) bool {
	return boot.Target == "Pxe" && (boot.Enabled == "Once" || boot.Enabled == "Continuous")
}

// memoryBackend keeps power in memory and plays the machine's PXE boot.
type memoryBackend struct{ lab *Lab }

func (b *memoryBackend) start(s *System, boot BootOverride) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setPower("On")
	if b.lab.cfg.BootURL == "" || b.lab.ctx.Err() != nil {
		return nil
	}
	if s.pxeCancel != nil {
		s.pxeCancel()
	}
	if !pxeBoot(boot) {
		// A disk boot runs what was deployed there: an image's OS calls
		// back once, on its first boot.
		if s.osCallback != "" {
			ctx, cancel := context.WithCancel(b.lab.ctx)
			s.pxeCancel = cancel
			b.lab.wg.Add(1)
			go b.simulateOSBoot(ctx, s, s.osCallback)
			s.osCallback = ""
		}
		return nil
	}
	ctx, cancel := context.WithCancel(b.lab.ctx)
	s.pxeCancel = cancel
	b.lab.wg.Add(1)
	go b.runPXE(ctx, s)
	return nil
}

// bootRetryPause is how long a simulated machine whose network boot could
// not reach the agent waits before booting again, as firmware does
// (SeaBIOS: "No bootable device. Retrying in 60 seconds"; server BIOSes:
// boot sequence retry). Without it an agent restarting at the wrong moment
// would leave the machine sitting at a dead boot until a step timeout.
var bootRetryPause = 2 * time.Second

func (b *memoryBackend) runPXE(ctx context.Context, s *System) {
	defer b.lab.wg.Done()
	for {
		res, err := simulateBoot(ctx, b.lab.http, b.lab.cfg.BootURL, s.mac, s.disks(), func(osCallback string) {
			s.mu.Lock()
			s.osCallback = osCallback
			s.mu.Unlock()
		})
		if ctx.Err() != nil && (res == nil || res.Deploy == nil || res.CallbackStatus == 0) {
			return // powered off or restarted mid-boot: this boot never finished
		}
		s.mu.Lock()
		s.pxeBoots++
		s.lastPXE, s.lastPXErr = res, err
		s.mu.Unlock()
		switch {
		case err != nil && agentUnreachable(err):
			b.lab.log.Warn("lab: simulated PXE boot could not reach the agent; the firmware retries", "system", s.name, "err", err, "retry_in", bootRetryPause)
			select {
			case <-ctx.Done():
				return
			case <-time.After(bootRetryPause):
			}
			continue
		case err != nil:
			// A real machine would sit at a PXE error or fall through to disk;
			// either way it stays powered on.
			b.lab.log.Warn("lab: simulated PXE boot failed", "system", s.name, "err", err)
		case res.Exit:
			b.lab.log.Info("lab: simulated PXE boot: script chose local boot", "system", s.name)
		default:
			b.lab.log.Info("lab: simulated PXE boot done", "system", s.name, "machine", res.Machine,
				"templates", len(res.Templates), "callback_status", res.CallbackStatus)
		}
		return
	}
}

// agentUnreachable reports a boot that failed because the agent was down
// or went down mid-request, not because it refused something.
func agentUnreachable(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func (b *memoryBackend) stop(s *System) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pxeCancel != nil {
		s.pxeCancel()
		s.pxeCancel = nil
	}
	s.setPower("Off")
	return nil
}

func (b *memoryBackend) close() error { return nil }
