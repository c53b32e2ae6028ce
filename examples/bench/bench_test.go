package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/gozone/gozone/internal/netns"
)

// requireBench skips (or in CI fails) without root and iperf3.
func requireBench(t *testing.T) {
	t.Helper()
	netns.RequireRoot(t)
	if _, err := exec.LookPath("iperf3"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v; CI is set, so this is a failure", errNoIperf)
		}
		t.Skip(errNoIperf)
	}
}

// TestShortMode runs the benchmark's short mode (every path that exists,
// briefly, with --profile) and checks that each available path carried
// traffic in every test, that raw wireguard-go and the veth baseline are
// among them, that the unavailable gozone paths carry no figures, that TCP
// runs report retransmits, that the gozone processes wrote CPU profiles
// and that the set-up probes all succeeded. It needs root and iperf3; in
// CI both are required.
func TestShortMode(t *testing.T) {
	requireBench(t)
	cfg := defaultConfig(true)
	cfg.ProfileDir = t.TempDir()
	rep, err := run(t, cfg)
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
		if udp := c.Test == "udp"; udp != (c.Retransmits == nil) {
			t.Errorf("%s/%s: retransmits %v (want a count for TCP only)", c.Test, c.Path, c.Retransmits)
		}
	}
	for _, s := range rep.Setup {
		if s.Failed != 0 || s.FailureLog != "" {
			t.Errorf("%s set-up: %d probes failed, logs in %s", s.Path, s.Failed, s.FailureLog)
		}
	}
	gozoneUp := 0
	for _, p := range rep.Paths {
		if !strings.HasPrefix(p.Name, "gozone-") || !p.Available {
			if len(p.Profiles) != 0 {
				t.Errorf("%s: profiles %v without a gozone deployment", p.Name, p.Profiles)
			}
			continue
		}
		gozoneUp++
		for _, who := range []string{"gateway", "client"} {
			f := p.Profiles[who]
			if f == "" || !strings.HasPrefix(f, cfg.ProfileDir) {
				t.Errorf("%s: no %s profile in %s: %v", p.Name, who, cfg.ProfileDir, p.Profiles)
				continue
			}
			checkPprof(t, f)
		}
	}
	if avail[pathQ1] && avail[pathQ2] && len(rep.QueueCompare) != 3 {
		t.Errorf("q2 vs q1: %d TCP comparisons, want 3: %+v", len(rep.QueueCompare), rep.QueueCompare)
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
	if gozoneUp > 0 && !strings.Contains(table.String(), "CPU profiles") {
		t.Errorf("table does not say where the profiles are:\n%s", table.String())
	}
	// The JSON report round-trips into the same table (--table).
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	var table2 bytes.Buffer
	printTable(&table2, &back)
	if table2.String() != table.String() {
		t.Errorf("table from the JSON report differs:\n%s\n---\n%s", table2.String(), table.String())
	}
	t.Logf("\n%s", table.String())
}

// checkPprof asserts that f holds a gzip-compressed pprof CPU profile.
func checkPprof(t *testing.T, f string) {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Error(err)
		return
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Errorf("%s: not a pprof profile: %v", f, err)
		return
	}
	raw, err := io.ReadAll(zr)
	if err != nil || !bytes.Contains(raw, []byte("nanoseconds")) {
		t.Errorf("%s: not a CPU profile (%v)", f, err)
	}
}

// TestPathsSelection runs one cheap path (--paths veth --setup=false):
// only it is built and measured, no set-up probes run, and the table says
// they were skipped.
func TestPathsSelection(t *testing.T) {
	requireBench(t)
	cfg := defaultConfig(true)
	cfg.Paths, cfg.SkipSetup = []string{pathVeth}, true
	rep, err := run(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Problems {
		t.Errorf("problem: %s", p)
	}
	if len(rep.Paths) != 1 || rep.Paths[0].Name != pathVeth || !rep.Paths[0].Available {
		t.Fatalf("paths: %+v", rep.Paths)
	}
	if len(rep.Results) != len(rep.Tests) || len(rep.Setup) != 0 || !rep.SetupSkipped {
		t.Errorf("%d results for %d tests, setup %v skipped %v", len(rep.Results), len(rep.Tests), rep.Setup, rep.SetupSkipped)
	}
	for _, c := range rep.Results {
		if c.MedianGbps <= 0 || c.MedianRatioVsWG != nil {
			t.Errorf("%s/%s: %.3f Gbit/s, ratio %v (no wireguard-go, so none)", c.Test, c.Path, c.MedianGbps, c.MedianRatioVsWG)
		}
	}
	var table bytes.Buffer
	printTable(&table, rep)
	if !strings.Contains(table.String(), "skipped (--setup=false)") || strings.Contains(table.String(), "\n  "+pathWireGuard+" ") {
		t.Errorf("table:\n%s", table.String())
	}
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
