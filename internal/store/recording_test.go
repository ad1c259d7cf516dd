package store

import (
	"context"
	"errors"
	"testing"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

func TestUpdateMachineRecording(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", BoltOptions{})
	if _, err := s.CreateMachine(ctx, testMachine("m1")); err != nil {
		t.Fatal(err)
	}
	changes, cancel := s.Subscribe()
	defer cancel()

	out, recorded, err := s.UpdateMachineRecording(ctx, "m1", func(m *model.Machine) (bool, []model.Event, error) {
		m.Status.Phase = model.PhaseInspecting
		return false, []model.Event{
			{Type: model.EventPhaseChanged, Phase: model.PhaseInspecting, Message: "reading inventory"},
			{Type: model.EventRunStarted, Machine: "someone-else"},
		}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if out.Status.Phase != model.PhaseInspecting || out.Version != 1 || out.Revision != 2 {
		t.Fatalf("machine after the write: phase %s, version %d, revision %d", out.Status.Phase, out.Version, out.Revision)
	}
	if len(recorded) != 2 || recorded[0].Seq == 0 || recorded[1].Seq <= recorded[0].Seq || recorded[0].Time.IsZero() {
		t.Fatalf("recorded events %+v: want two with increasing Seq and a time", recorded)
	}
	stored, err := s.ListEvents(ctx, "m1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 2 || stored[1].Machine != "m1" || stored[1].Type != model.EventRunStarted {
		t.Fatalf("stored events %+v: want both, bound to m1 whatever the caller said", stored)
	}
	want := []Change{
		{Kind: KindMachine, Name: "m1", Revision: 2},
		{Kind: KindEvent, Name: "m1", Revision: recorded[0].Seq},
		{Kind: KindEvent, Name: "m1", Revision: recorded[1].Seq},
	}
	for i, w := range want {
		if got := <-changes; got != w {
			t.Fatalf("change %d: %+v, want %+v", i, got, w)
		}
	}

	// A refused write records nothing: neither the status nor its events.
	refused := errors.New("stale decision")
	_, _, err = s.UpdateMachineRecording(ctx, "m1", func(m *model.Machine) (bool, []model.Event, error) {
		m.Status.Phase = model.PhaseFailed
		return false, []model.Event{{Type: model.EventError}}, refused
	})
	if !errors.Is(err, refused) {
		t.Fatalf("err %v, want the mutate's error", err)
	}
	after, _ := s.ListEvents(ctx, "m1", 0, 0)
	m, _ := s.GetMachine(ctx, "m1")
	if len(after) != 2 || m.Status.Phase != model.PhaseInspecting {
		t.Fatalf("after a refused write: %d events, phase %s", len(after), m.Status.Phase)
	}
}
