package main

import (
	"math"
	"strings"
	"testing"
)

func TestParseWrk(t *testing.T) {
	// Outputs of wrk 4.1.0 (Debian 12).
	const ok = `Running 2s test @ http://127.0.0.1:18777/x.bin
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     8.30ms   16.13ms 123.94ms   94.27%
    Req/Sec   387.63     88.73   505.00     63.16%
  Latency Distribution
     50%    3.90ms
     75%    6.23ms
     90%   12.82ms
     99%  102.82ms
  762 requests in 2.01s, 727.04MB read
Requests/sec:    378.80
Transfer/sec:    361.41MB
`
	const bad = `  Latency Distribution
     50%    1.00ms
     75%    2.00ms
     90%   11.89ms
     99%    1.20s
  627 requests in 1.04s, 318.40KB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 627
Requests/sec:    600.68
`
	tests := []struct {
		name     string
		out      string
		mibps    float64
		p99ms    float64
		requests int
		errors   int
		wantErr  string
	}{
		{name: "success", out: ok, mibps: 727.04 / 2.01, p99ms: 102.82, requests: 762},
		{name: "errors counted, seconds converted", out: bad, mibps: 318.40 / 1024 / 1.04, p99ms: 1200, requests: 627, errors: 632},
		{name: "no --latency", out: strings.Replace(ok, "99%", "98%", 1), wantErr: "99% latency"},
		{name: "not wrk", out: "unable to connect to 127.0.0.1:1 Connection refused", wantErr: "summary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseWrk(tt.out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got.mibps-tt.mibps) > 1e-6 || math.Abs(got.p99ms-tt.p99ms) > 1e-6 || got.requests != tt.requests || got.errors != tt.errors {
				t.Fatalf("got %+v, want mibps %v p99 %v requests %d errors %d", got, tt.mibps, tt.p99ms, tt.requests, tt.errors)
			}
		})
	}
}
