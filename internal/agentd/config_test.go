package agentd

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBootURL(t *testing.T) {
	for _, c := range []struct{ bootURL, bootAddr, want string }{
		{"http://10.0.2.2:8081/", ":8080", "http://10.0.2.2:8081"},
		{"", "192.168.1.10:8080", "http://192.168.1.10:8080"},
		{"", "[fd00::1]:8080", "http://[fd00::1]:8080"},
	} {
		got, guessed, err := bootURL(c.bootURL, c.bootAddr)
		require.NoError(t, err)
		assert.False(t, guessed, c.bootAddr)
		assert.Equal(t, c.want, got)
	}
	got, guessed, err := bootURL("", ":8080")
	require.NoError(t, err)
	assert.True(t, guessed, "a wildcard boot-addr is a guess")
	assert.Regexp(t, `^http://.*:8080$`, got)
	assert.NotContains(t, got, "0.0.0.0")
}

func TestDefaultsAreValidButForTheRequired(t *testing.T) {
	c := Defaults()
	assert.Equal(t, 5, c.TFTPRetries)
	assert.Equal(t, "exit", c.UnknownMAC)
	require.ErrorContains(t, c.Validate(), "--token-file is required")
	c.TokenFile = "tokens"
	require.NoError(t, c.Validate())
}
