package apiserver

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

func (s *Server) machineEvents(w http.ResponseWriter, r *http.Request) error {
	return s.events(w, r, r.PathValue("name"))
}

func (s *Server) agentEvents(w http.ResponseWriter, r *http.Request) error {
	return s.events(w, r, "")
}

// events answers one page of a machine's (or, with machine "", the agent's)
// events after the ?after= cursor. With ?wait= and nothing new yet, it waits
// for the next event.
func (s *Server) events(w http.ResponseWriter, r *http.Request, machine string) error {
	q := r.URL.Query()
	var after uint64
	if v := q.Get(api.QueryAfter); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return badRequest(api.QueryAfter, "after must be an event sequence number, not %q", v)
		}
		after = n
	}
	limit := api.DefaultEventLimit
	if v := q.Get(api.QueryLimit); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > api.MaxEventLimit {
			return badRequest(api.QueryLimit, "limit must be between 1 and %d, not %q", api.MaxEventLimit, v)
		}
		limit = n
	}
	wait, _, err := parseLongPoll(r)
	if err != nil {
		return err
	}
	var evs []model.Event
	poll := func() (bool, error) {
		if machine != "" {
			if _, err := s.store.GetMachine(r.Context(), machine); err != nil {
				return false, storeError(err, "machine", machine)
			}
		}
		var err error
		if evs, err = s.store.ListEvents(r.Context(), machine, after, limit); err != nil {
			return false, fmt.Errorf("listing events: %w", err)
		}
		return len(evs) > 0, nil
	}
	relevant := func(c store.Change) bool {
		return (c.Kind == store.KindEvent && c.Name == machine) ||
			// A deleted machine takes its events with it.
			(machine != "" && c.Kind == store.KindMachine && c.Name == machine && c.Deleted)
	}
	if done, err := s.longPoll(r.Context(), wait, 0, relevant, poll); err != nil || !done {
		return err
	}
	out := api.EventList{Events: eventsToAPI(evs), Next: after}
	if n := len(evs); n > 0 {
		out.Next = evs[n-1].Seq
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
