// Package provision is the reconciler: it drives every machine from its
// observed phase toward its desired state, one step at a time, with the
// progress of each step in the store so an agent restart resumes where it
// stopped. It decides; the BMC (Redfish), the boot edge (PXE, templates,
// callbacks) and the store only carry out and record.
//
// # State table
//
// Each reconcile pass makes exactly one of these decisions; "→" is a status write
// recorded as a phase_changed event with the reason, and "BMC x" is the one
// BMC call the pass makes (a BMC failure is retried with backoff up to
// Timeouts.Retries times, then → failed with last_error).
//
//	phase / step                   condition                                    does
//	any but deprovisioning/failed  deletion requested, never powered on by the  forgotten (no BMC call)
//	                               agent (not installed, no run power-on, not on)
//	registering ("")               -                                            → inspecting
//	inspecting                     deletion requested                           release (below)
//	inspecting                     -                                            BMC Inventory (fills MACs when none) → available
//	available                      deletion requested                           release
//	available                      desired available, clean pending             release
//	available                      desired off                                  → deprovisioning/powering_off
//	available                      desired provisioned, adopt, never installed  → provisioned with the target, no run, no BMC call
//	                                                                            (→ failed when the BMC reports it off)
//	available                      desired provisioned, configured MACs not in  → failed, naming the MACs the BMC reports
//	                               the inventory's NICs
//	available                      desired provisioned, target ok, gate open    new run → provisioning/setting_boot
//	available                      desired available                            power left as is; drift poll; inventory re-read
//	                                                                            every InventoryInterval (hardware drift events)
//	off                            deletion requested                           release
//	off                            desired available                            → available (power left as is)
//	off                            desired provisioned, target ok, gate open    new run → provisioning/setting_boot
//	provisioned                    deletion requested or desired available      clean pending ? release
//	                                                                            : wipe profile ? wipe run → deprovisioning/setting_boot
//	                                                                            : → deprovisioning/powering_off
//	provisioned                    desired off                                  → deprovisioning/powering_off (no wipe)
//	provisioned                    target differs from provisioned_*, gate open new run → provisioning/setting_boot
//	provisioned                    -                                            drift poll
//	provisioning/*  (no callback)  deletion requested or desired not provisioned run aborted (token dead) → release (desired off:
//	                                                                            → deprovisioning/powering_off)
//	provisioning/*  (no callback)  target differs from the run's, gate open     new run (old token dead) → provisioning/setting_boot
//	*/setting_boot                 -                                            BMC boot override Pxe once, inventory re-read → powering_on
//	*/powering_on                  a boot signal or the callback already seen   → waiting_pxe (never power again)
//	*/powering_on                  -                                            BMC power On (Off) / ForceRestart (On) → waiting_pxe
//	*/waiting_pxe                  pxe_requested or script_served seen          → booting_installer
//	*/waiting_pxe|booting_installer kernel, initrd or template fetched           → installing
//	*/waiting_pxe|booting_installer|installing  no new boot step for BootStallWarning
//	                                                                            last_error says where the boot stalled (boot_stalled
//	                                                                            event once per stall; the age is refreshed each period)
//	*/waiting_pxe|booting_installer|installing  a boot step after a stall note  last_error cleared
//	*/waiting_pxe                  deadline, no boot signal, attempts < retries → setting_boot (power cycle again)
//	*/waiting_pxe|booting_installer|installing  deadline otherwise              → failed (with where the boot stalled)
//	(Callback, token ok)           provisioning, any step                       → provisioning/finishing
//	(Callback, token ok)           deprovisioning (wipe run), any step          → deprovisioning/powering_off
//	(Callback, token ok)           clean run, status ok                         clean pending cleared → deprovisioning/powering_off
//	(Callback, token ok)           clean run, status not ok                     → failed: the disk may hold the config drive
//	(Callback, status not "ok")    any                                          → failed with the log tail
//	provisioning/finishing         -                                            BMC boot override Hdd once → provisioned
//	deprovisioning/powering_off    -                                            BMC GracefulShutdown → deleted (deletion requested)
//	                                                                            | off (desired off) | available
//	failed                         deletion requested, never powered on         forgotten (no BMC call)
//	failed                         deletion requested after it failed           release (a DELETE of a machine whose clean
//	                                                                            failed requests the deletion again)
//	failed                         failed after the deletion request, clean     wait: never forgotten with the config drive
//	                               pending (the clean failed)                   on its disk (force_destroy skips the clean)
//	failed                         failed after the deletion request (the       forgotten; the event says it may still be on
//	                               power-off failed for good)
//	failed                         spec version > observed version, or the      → inspecting (the inventory is read again)
//	                               target differs from the failed run's
//	failed                         -                                            wait for the operator (spec change or provision action)
//
// The table is carried out, not restated: decide and decideCallback name
// every move (a BMC step's plan names where its success leads), the
// executors only apply the plan, and the phase moves they may name are
// declared in allowed (states.go). A status write along any other move is
// refused, and TestTransitionsDeclared fails when a plan names one.
//
// "Release" is how a machine leaves: while its disk holds a config drive
// that a deploy ramdisk wrote (Status.CleanPending, set by the
// image_written callback), a clean run → deprovisioning/setting_boot: the
// deploy ramdisk boots with baremetal.mode=clean, removes the config drive
// and wipes what the profile's image.wipe asks (metadata, full), and calls
// back; its profile missing, it waits with last_error instead. Without a
// config drive, → deprovisioning/powering_off. A machine that is deployed
// but never booted (never powered on by the agent) is still "powered on"
// for the forget rules once its disk holds a config drive.
//
// "Target" is (effective profile, its version, params hash). A cluster
// member's gate opens only when every member of the earlier roles is
// provisioned with its current target; a member that is re-provisioned
// (leaves phase provisioned) also needs fewer than max_unavailable members
// of its role out and no failed member in the cluster.
//
// A settled machine's power polls and inventory re-reads also keep
// bmc_status: auth_failed (401/403) or unreachable (no answer) with
// last_error saying so and what fixes it, until a call succeeds; a spec
// write to such a machine polls it at once.
//
// The power a phase expects, for drift: provisioned → On; off → Off;
// available → Off when the reconciler powered it off (the machine has a
// past run), otherwise none (registration leaves the power as it is).
//
// # Restart safety
//
// Every step's progress is written (store.UpdateMachine, a status write
// that leaves the spec version alone) before the next step begins, so a
// new agent resumes from the recorded step: a boot override or power-off
// is simply repeated (both are idempotent); a power-on is never repeated
// once any boot signal or the callback was seen, and the powering_on
// step's deadline, written before the power action, tells a new agent
// that an earlier one may have powered the machine on already (a machine
// that is on is then left to boot; the waiting_pxe deadline covers the
// case where it was not).
//
// # Concurrency
//
// A work queue keyed by machine name hands each machine to one worker at a
// time; operator power actions take the same per-machine lock. At most
// Config.MaxActive machines are in a BMC power/boot step at once; the
// others wait in line, and each released slot wakes the oldest of them, so
// a backlog costs no work while it waits (a fallback timer only covers a
// wake that went to a machine no longer needing the slot). Status
// writes and the events that describe them are ordered per machine, and
// cluster members' run starts and completions per cluster.
package provision
