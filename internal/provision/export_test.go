package provision

// PhaseString is phaseString for the tests of package provision_test,
// which run the reconciler inside the agent agentd assembles.
var (
	PhaseString  = phaseString
	SlotFallback = slotFallback
)
