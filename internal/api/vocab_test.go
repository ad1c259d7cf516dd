package api_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/provision"
)

// TestProvisionSpeaksTheAPIVocabulary holds the reconciler's own action
// and cluster-phase names, which the API passes through and reports, to
// the values declared here until the reconciler takes them from here.
func TestProvisionSpeaksTheAPIVocabulary(t *testing.T) {
	assert.Equal(t, api.Strings(api.ActionNames), []string{
		provision.ActionPowerOn, provision.ActionPowerOff, provision.ActionReset,
		provision.ActionProvision, provision.ActionDeprovision, provision.ActionInspect,
	})
	assert.Equal(t, api.Strings(api.ClusterPhases), []string{
		provision.ClusterPending, provision.ClusterConverging, provision.ClusterReady, provision.ClusterPaused,
	})
}
