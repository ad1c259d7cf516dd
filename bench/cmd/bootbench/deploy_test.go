package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The console lines are deploy-image/init's; a change there that the
// benchmark no longer reads fails here rather than mid-run.
func TestParseDeployConsole(t *testing.T) {
	console := "deploy: at 12.3 s since boot: writing http://10.0.2.4:1/images/image.raw (raw, 134217728 bytes) to /dev/vda (268435456 bytes)\n" +
		"deploy: bench dd: wrote 134217728 bytes in 7680 ms (exit 0) \n" +
		"deploy: bench hash: sha256sum of the download in 11630 ms\n" +
		"deploy: streamed 134217728 bytes in 30790 ms\n" +
		"deploy: checksum verified (sha256)\n" +
		"deploy: image written to /dev/vda: 134217728 bytes in 33460 ms\n"
	var tr deployTrial
	require.NoError(t, tr.parse(console))
	assert.Equal(t, deployTrial{ddBytes: 134217728, ddMS: 7680, streamBytes: 134217728, streamMS: 30790, writtenMS: 33460, hashMS: 11630}, tr)
	assert.InDelta(t, 16.67, tr.ddMiBps(), 0.01)
	assert.InDelta(t, 4.16, tr.deployMiBps(), 0.01)

	var failed deployTrial
	err := failed.parse("deploy: bench dd: wrote 0 bytes in 10 ms (exit 1) wget: server returned error: HTTP/1.1 404 Not Found \n")
	require.ErrorContains(t, err, "the plain dd failed (exit 1): wget: server returned error")
	require.ErrorContains(t, new(deployTrial).parse("deploy: streamed 1 bytes in 1 ms\n"), "no 'bench dd' line")
}
