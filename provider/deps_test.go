package provider

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestProviderDependsOnlyOnClientAndAPI keeps the provider on the far side
// of the wire: it may know the agent only through internal/client and
// internal/api, so what it sees is what any other client sees. Leaf rules
// shared with the agent, which import none of its packages, are allowed
// (internal/endpoint, the BMC endpoint rule checked at plan; through the
// client, internal/backoff).
func TestProviderDependsOnlyOnClientAndAPI(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	require.NoError(t, err, "go list -deps")
	const module = "github.com/openbaremetal/terraform-provider-baremetal/"
	for _, forbidden := range []string{"internal/model", "internal/provision", "internal/store", "internal/boot"} {
		for dep := range strings.Lines(string(out)) {
			dep = strings.TrimSpace(dep)
			assert.False(t, dep == module+forbidden || strings.HasPrefix(dep, module+forbidden+"/"),
				"the provider depends on %s; it must use internal/client and internal/api only", dep)
		}
	}
}
