package boot

import (
	"errors"
	"fmt"
	"strings"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// secretSource is what {{ secret "name" }} and {{ generatedSecret "name" }}
// read. Only an install template fetched with the run's live token gets
// real values; previews and dry runs get placeholders (redact), and what is
// served without a token (the boot script and its cmdline) gets a nil
// source, which refuses.
type secretSource struct {
	redact bool
	// params are the machine's effective secret params (site < profile <
	// cluster < machine).
	params model.Secrets
	// generate returns the machine's generated secret name, making it on
	// first use (live only).
	generate func(name string) (string, error)
	// served are the values handed out, so that an error message that
	// happens to quote one is scrubbed.
	served []string
}

// Placeholders a preview shows instead of secret values.
func secretPlaceholder(name string) string    { return "<secret:" + name + ">" }
func generatedPlaceholder(name string) string { return "<generatedSecret:" + name + ">" }

var errSecretsNotHere = errors.New("secrets are served only in install templates an installer fetches with its run's token, " +
	"not in the cmdline or the iPXE script, which any host on the boot network can fetch")

func (s *secretSource) secret(name string) (string, error) {
	if s == nil {
		return "", fmt.Errorf("secret %q: %w", name, errSecretsNotHere)
	}
	v, ok := s.params[name]
	if !ok {
		return "", fmt.Errorf("secret %q is not set: give it in secret_params_wo of the site params, the boot profile, the cluster or the machine", name)
	}
	if s.redact {
		return secretPlaceholder(name), nil
	}
	s.served = append(s.served, v)
	return v, nil
}

func (s *secretSource) generated(name string) (string, error) {
	if s == nil {
		return "", fmt.Errorf("generatedSecret %q: %w", name, errSecretsNotHere)
	}
	if !model.SecretNameRE.MatchString(name) {
		return "", fmt.Errorf("generatedSecret %q: a name is 1 to 63 letters, digits, '_', '.' or '-', not starting with '.' or '-'", name)
	}
	if s.redact || s.generate == nil {
		return generatedPlaceholder(name), nil
	}
	v, err := s.generate(name)
	if err != nil {
		return "", fmt.Errorf("generatedSecret %q: %w", name, err)
	}
	s.served = append(s.served, v)
	return v, nil
}

// scrub replaces any served secret value quoted in err's message with a
// placeholder: a render error goes to last_error, events and logs, and a
// template can make text/template quote a value (include of a name taken
// from a secret, say).
func (s *secretSource) scrub(err error) error {
	if s == nil || err == nil || len(s.served) == 0 {
		return err
	}
	msg := err.Error()
	clean := msg
	for _, v := range s.served {
		// Shorter values would garble the message more than they hide.
		if len(v) >= 3 {
			clean = strings.ReplaceAll(clean, v, "<secret>")
		}
	}
	if clean == msg {
		return err
	}
	var te *TemplateError
	if errors.As(err, &te) {
		scrubbed := *te
		for _, v := range s.served {
			if len(v) >= 3 {
				scrubbed.Message = strings.ReplaceAll(scrubbed.Message, v, "<secret>")
			}
		}
		if scrubbed.Error() == clean {
			return &scrubbed
		}
	}
	return errors.New(clean)
}

// secretNameHolding names the secret params whose value is v, for a
// refusal that must not repeat the value.
func (s *secretSource) namesHolding(v string) []string {
	if s == nil {
		return nil
	}
	var out []string
	for _, k := range s.params.Names() {
		if s.params[k] == v {
			out = append(out, k)
		}
	}
	return out
}
