package main

import (
	"strings"
	"testing"
	"time"
)

func TestProvisioningVerdict(t *testing.T) {
	row := func(n int, wall, cpu time.Duration, rss int64, failed int) provisionResult {
		return provisionResult{machines: n, wall: wall, cpu: cpu, use: usage{peakRSS: rss}, wait: phaseWait{failed: failed}}
	}
	for _, tc := range []struct {
		name string
		rows []provisionResult
		want []string
	}{
		{"all met", []provisionResult{
			row(100, 3*time.Second, 2*time.Second, 30<<20, 0),
			row(1000, 30*time.Second, 20*time.Second, 100<<20, 0),
		}, []string{"60 s: **met**", "RSS: **met**", "flat from 100 to 1000 machines (at most 1.5× growth): **met**"}},
		{"slow and fat", []provisionResult{
			row(100, 3*time.Second, 2*time.Second, 30<<20, 0),
			row(1000, 61*time.Second, 20*time.Second, 301<<20, 0),
		}, []string{"60 s: **missed**", "RSS: **missed**", "growth): **missed**"}},
		{"failures miss the time target", []provisionResult{
			row(1000, 10*time.Second, 10*time.Second, 10<<20, 1),
		}, []string{"60 s: **missed** (10.0 s, 1 failed)"}},
		{"CPU per machine doubling is not flat", []provisionResult{
			row(100, 3*time.Second, 1*time.Second, 30<<20, 0),
			row(1000, 30*time.Second, 20*time.Second, 100<<20, 0),
			row(5000, 150*time.Second, 200*time.Second, 200<<20, 0),
		}, []string{"flat from 100 to 5000 machines", "growth): **missed** (agent CPU 10.0 → 40.0 ms per machine, 4.00×"}},
		{"no 1000 row", []provisionResult{row(100, time.Second, time.Second, 1, 0)}, []string{"not judged"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := provisioningVerdict(tc.rows)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("verdict %q lacks %q", got, w)
				}
			}
		})
	}
}

func TestTwoPhaseTableMediansAndFailures(t *testing.T) {
	rs := []twoPhaseResult{
		{machines: 10, register: time.Second, powerOn: 2 * time.Second},
		{machines: 10, register: 3 * time.Second, powerOn: 4 * time.Second, wait: phaseWait{failed: 1, firstError: "m-3: BMC refused"}},
		{machines: 10, register: 2 * time.Second, powerOn: 10 * time.Second},
	}
	got := twoPhaseTable([]string{"storm"}, [][]twoPhaseResult{rs})
	// Medians: register 2 s, power-on 4 s, 10 machines / 4 s = 2 (rounded) per s.
	if !strings.Contains(got, "| storm | 10 | 2.0 | 4.0 | 2 |") {
		t.Errorf("table row:\n%s", got)
	}
	if !strings.Contains(got, "1/30 (e.g. m-3: BMC refused)") {
		t.Errorf("failures not summed over the runs:\n%s", got)
	}
}

func TestInts(t *testing.T) {
	if got, err := ints("-sizes", "100, 1000,5000"); err != nil || len(got) != 3 || got[2] != 5000 {
		t.Fatalf("ints = %v, %v", got, err)
	}
	for _, bad := range []string{"", "1,,2", "0", "-5", "ten"} {
		if _, err := ints("-sizes", bad); err == nil {
			t.Errorf("ints(%q) accepted", bad)
		}
	}
}
