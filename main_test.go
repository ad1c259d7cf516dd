package main

import (
	"maps"
	"testing"
)

func TestSilenceUnseenLogs(t *testing.T) {
	allOff := map[string]string{"TF_LOG_SDK": "off", "TF_LOG_SDK_PROTO": "off", "TF_LOG_SDK_FRAMEWORK": "off", "TF_LOG_PROVIDER_BAREMETAL": "off"}
	withOff := func(extra map[string]string) map[string]string {
		out := maps.Clone(allOff)
		maps.Copy(out, extra)
		return out
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want map[string]string
	}{
		{"no logging asked: all SDK loggers off", map[string]string{}, allOff},
		{"TF_LOG set: untouched", map[string]string{"TF_LOG": "trace"}, map[string]string{"TF_LOG": "trace"}},
		{"TF_LOG_PROVIDER set: untouched", map[string]string{"TF_LOG_PROVIDER": "debug"}, map[string]string{"TF_LOG_PROVIDER": "debug"}},
		{"TF_LOG empty counts as unset", map[string]string{"TF_LOG": ""}, withOff(map[string]string{"TF_LOG": ""})},
		{"an explicit SDK level is kept", map[string]string{"TF_LOG_SDK_PROTO": "error"}, withOff(map[string]string{"TF_LOG_SDK_PROTO": "error"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := maps.Clone(tc.env)
			silenceUnseenLogs(func(k string) (string, bool) { v, ok := env[k]; return v, ok },
				func(k, v string) error { env[k] = v; return nil })
			if !maps.Equal(env, tc.want) {
				t.Errorf("env = %v, want %v", env, tc.want)
			}
		})
	}
}
