package model

// BMCSession is a Redfish session the agent opened on a BMC. The agent
// keeps a record of each until it logs out, so that sessions left open by
// an agent that was killed are deleted at its next start instead of
// filling the BMC's session table (iDRAC holds a handful per user).
type BMCSession struct {
	// Base is the BMC's scheme://host[:port]; URI the session's path on it.
	Base string `json:"base"`
	URI  string `json:"uri"`
	User string `json:"user"`
	// Token is the session's X-Auth-Token, which is all it takes to delete
	// the session. Stores seal it at rest.
	Token string `json:"-"`
	// Insecure and CACertPEM are the TLS settings the session was opened
	// with, so the delete trusts the same certificate.
	Insecure  bool   `json:"insecure,omitempty"`
	CACertPEM string `json:"ca_cert_pem,omitempty"`
}
