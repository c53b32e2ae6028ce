package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/gozone/gozone/internal/netns"
)

// TestShortMode runs the benchmark's short mode (every path that exists,
// briefly) and checks that each available path carried traffic in every
// test, that raw wireguard-go and the veth baseline are among them, and
// that the unavailable gozone paths carry no figures. It needs root and
// iperf3; in CI both are required.
func TestShortMode(t *testing.T) {
	netns.RequireRoot(t)
	if _, err := exec.LookPath("iperf3"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v; CI is set, so this is a failure", errNoIperf)
		}
		t.Skip(errNoIperf)
	}
	rep, err := run(t, defaultConfig(true))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Problems {
		t.Errorf("problem: %s", p)
	}
	avail := map[string]bool{}
	for _, p := range rep.Paths {
		avail[p.Name] = p.Available
		if !p.Available && !strings.Contains(p.Note, "not available") {
			t.Errorf("%s unavailable without saying so: %q", p.Name, p.Note)
		}
	}
	for _, want := range []string{"veth", "wireguard-go"} {
		if !avail[want] {
			t.Errorf("path %s not available", want)
		}
	}
	for _, c := range rep.Results {
		if !c.Available {
			if len(c.Runs) != 0 || c.MedianGbps != 0 || c.MedianRatioVsWG != nil {
				t.Errorf("%s/%s: unavailable path has figures", c.Test, c.Path)
			}
			continue
		}
		if len(c.Runs) != 1 {
			t.Errorf("%s/%s: %d runs, want 1", c.Test, c.Path, len(c.Runs))
		}
		if c.MedianGbps <= 0 {
			t.Errorf("%s/%s: carried no traffic", c.Test, c.Path)
		}
		if c.MedianRatioVsWG == nil {
			t.Errorf("%s/%s: no ratio against wireguard-go", c.Test, c.Path)
		}
	}
	if s := rep.Setup[0]; s.Path != "wireguard-go" || s.N != defaultConfig(true).SetupN || s.MedianMs <= 0 {
		t.Errorf("wireguard-go set-up: %+v", s)
	}
	for _, p := range rep.Paths {
		if p.Name == "wireguard-go" && len(p.CPUSecondsPerGB) != 2 {
			t.Errorf("wireguard-go CPU per GB: %v", p.CPUSecondsPerGB)
		}
	}
	var table bytes.Buffer
	printTable(&table, rep)
	for _, p := range rep.Paths {
		want := p.Name
		if !p.Available {
			want = p.Note
		}
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
