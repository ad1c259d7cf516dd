package api_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/provision"
)

// TestProvisionSpeaksTheAPIVocabulary holds the reconciler's own action
// names, which the API passes through, to the values declared here until
// the reconciler takes them from here.
func TestProvisionSpeaksTheAPIVocabulary(t *testing.T) {
	assert.Equal(t, api.Strings(api.ActionNames), []string{
		provision.ActionPowerOn, provision.ActionPowerOff, provision.ActionReset,
		provision.ActionProvision, provision.ActionDeprovision, provision.ActionInspect,
	})
}
