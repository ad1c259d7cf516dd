package provision_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// TestReprovisionOnSnippetChange: changing a snippet re-provisions the
// machines whose profile includes it, and only those.
func TestReprovisionOnSnippetChange(t *testing.T) {
	e := newEnv(t, envOpts{machines: 2})
	ctx := context.Background()
	_, err := e.st.CreateTemplate(ctx, &model.Template{Name: "site-note", Content: "note: one"})
	require.NoError(t, err)
	e.profile(&model.BootProfile{Name: "with-snippet", Kernel: "vmlinuz", Initrds: []string{"initrd.img"},
		Cmdline:   "console=ttyS0 baremetal.templates=user-data",
		Templates: map[string]string{"user-data": "#cloud-config\nhostname: {{ .Machine.Name }}\n{{ template \"site-note\" . }}\n"},
		Snippets:  []string{"site-note"}})
	names := e.lab.Names()
	user, other := names[0], names[1]
	e.update(user, func(m *model.Machine) { m.State, m.BootProfile = model.StateProvisioned, "with-snippet" })
	e.update(other, func(m *model.Machine) { m.State = model.StateProvisioned })
	e.start()
	e.awaitAll(model.PhaseProvisioned, 30*time.Second)
	first, otherRun := e.machine(user).Run, e.machine(other).Run
	assert.Equal(t, map[string]uint64{"site-note": 1}, first.Snippets, "the run records the snippet versions it rendered")

	_, err = e.st.UpdateTemplate(ctx, "site-note", func(tp *model.Template) error { tp.Content = "note: two"; return nil })
	require.NoError(t, err)
	e.await("re-provisioned with snippet v2", 20*time.Second, func() (bool, string) {
		m := e.machine(user)
		return m.Status.Phase == model.PhaseProvisioned && m.Run.ID != first.ID, describe(m)
	})
	m := e.machine(user)
	assert.Equal(t, map[string]uint64{"site-note": 2}, m.Run.Snippets)
	res, err := e.lab.System(user).LastPXE()
	require.NoError(t, err)
	require.Len(t, res.Templates, 1)
	assert.Contains(t, res.Templates[0].Body, "note: two")
	assert.Equal(t, otherRun.ID, e.machine(other).Run.ID, "a machine whose profile does not include the snippet was re-provisioned")
	assert.Equal(t, 1, e.lab.System(other).PowerOnCount())
}

// TestRenderFailureFailsRun: a template that does not render fails the run
// at once with the render error as last_error, not at the install timeout.
func TestRenderFailureFailsRun(t *testing.T) {
	e := newEnv(t, envOpts{machines: 1})
	n := e.lab.Names()[0]
	_, err := e.st.UpdateProfile(context.Background(), "os", func(p *model.BootProfile) error {
		p.Templates = map[string]string{"user-data": "#cloud-config\nhostname: {{ .Machine.Name }}\nkey: {{ .Params.nosuchparam }}\n"}
		return nil
	})
	require.NoError(t, err)
	e.update(n, func(m *model.Machine) { m.State = model.StateProvisioned })
	e.start()
	m := e.awaitPhase(n, model.PhaseFailed, 20*time.Second)
	for _, want := range []string{"rendering failed", `template "user-data" line 3 column`, `param "nosuchparam" is not set`} {
		assert.Contains(t, m.Status.LastError, want)
	}
	assert.True(t, m.Run.TokenUsed, "the failed run's token still serves templates")
	assert.False(t, strings.Contains(m.Status.LastError, m.Run.Token))
}
