package client

import "errors"

// IsUnreachable reports an error that got no HTTP answer from the agent:
// refused, unreachable, timed out, or a TLS certificate or protocol
// mismatch. Callers that must tell "the agent said no" from "the agent was
// not there" (the CLI's exit codes) branch on it.
func IsUnreachable(err error) bool {
	var te *transportErr
	return errors.As(err, &te)
}
