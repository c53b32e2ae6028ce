package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gozone/gozone/internal/netns"
	"github.com/gozone/gozone/internal/topo"
)

// config is what the flags set.
type config struct {
	Short    bool
	Duration time.Duration // per iperf3 run
	Rounds   int           // A B A B … pairs per test
	UDPRate  string        // iperf3 -b for the UDP test
	MTU      int           // tunnel MTU of raw wireguard-go (gozone uses 1280)
	WGBin    string        // prebuilt wireguard-go; empty: build from go.mod
	SetupN   int           // connection set-up probes
	// SetupTimeout bounds one gozone set-up probe.
	SetupTimeout time.Duration
	// Paths, when not empty, are the only paths measured (--paths).
	Paths []string
	// SkipSetup skips the connection set-up probes (--setup=false).
	SkipSetup bool
	// ProfileDir, when set, receives CPU profiles of every gozone
	// gateway and client (--profile; see profile.go).
	ProfileDir string
}

func defaultConfig(short bool) config {
	c := config{Short: short, Duration: 3 * time.Second, Rounds: 3, UDPRate: "100M", MTU: 1280, SetupN: 20, SetupTimeout: 20 * time.Second}
	if short {
		c.Duration, c.Rounds, c.SetupN = time.Second, 1, 3
	}
	return c
}

// benchPath is one way from the client to an iperf3 server.
type benchPath struct {
	Name      string `json:"name"`
	Desc      string `json:"description"`
	Available bool   `json:"available"`
	Note      string `json:"note,omitempty"`
	// CPUSecondsPerGB: CPU time (user+system) of each process of the path
	// per GB received by iperf3, over all runs of the path.
	CPUSecondsPerGB map[string]float64 `json:"cpu_seconds_per_gb,omitempty"`
	// TCPRetransmits: per TCP test, the retransmits summed over its runs.
	TCPRetransmits map[string]int64 `json:"tcp_retransmits,omitempty"`
	// Profiles: "gateway"/"client" → CPU profile file (--profile).
	Profiles map[string]string `json:"cpu_profiles,omitempty"`

	from *topo.Host
	to   netip.Addr
	// relayHost, when set, is the relay's host: every run checks from its
	// received bytes that the path went through it (relayed) or not.
	relayHost *topo.Host
	relayed   bool
	procs     []namedPid
	cpuTicks  map[string]uint64
	bytes     uint64
}

type namedPid struct {
	name string
	pid  int
}

// runRec is one iperf3 run.
type runRec struct {
	Round int `json:"round"`
	iperfResult
	StealPercent float64 `json:"steal_percent"`
	// BusyPercent: non-idle share of all CPUs during the run (ours and
	// everyone else's).
	BusyPercent float64 `json:"busy_percent"`
	// RelayShare is the relay host's received bytes over the payload
	// (gozone paths): ≥ 1 when relayed, ≈ 0 when direct.
	RelayShare *float64 `json:"relay_share,omitempty"`
	Error      string   `json:"error,omitempty"`
}

// cell is one test on one path.
type cell struct {
	Test              string   `json:"test"`
	Path              string   `json:"path"`
	Available         bool     `json:"available"`
	Runs              []runRec `json:"runs,omitempty"`
	MedianGbps        float64  `json:"median_gbps"`
	MedianLossPercent *float64 `json:"median_loss_percent,omitempty"`
	// MedianRatioVsWG is the median over rounds of this path's figure
	// divided by raw wireguard-go's in the same round.
	MedianRatioVsWG *float64 `json:"median_ratio_vs_wireguard_go,omitempty"`
	// Retransmits (TCP tests): sum over the successful runs, and per GB
	// received by iperf3.
	Retransmits      *int64   `json:"retransmits,omitempty"`
	RetransmitsPerGB *float64 `json:"retransmits_per_gb,omitempty"`
}

// setupResult is a connection set-up time measurement.
type setupResult struct {
	Path     string    `json:"path"`
	What     string    `json:"what"`
	N        int       `json:"n"`
	MedianMs float64   `json:"median_ms,omitempty"`
	AllMs    []float64 `json:"all_ms,omitempty"`
	Note     string    `json:"note,omitempty"`
	// Failed probes (N counts the successful ones), one line each, and
	// the file holding the processes' logs of every failed probe.
	Failed     int      `json:"failed"`
	Errors     []string `json:"errors,omitempty"`
	FailureLog string   `json:"failure_log,omitempty"`
}

type report struct {
	Mode      string    `json:"mode"`
	Started   time.Time `json:"started"`
	ElapsedS  float64   `json:"elapsed_s"`
	DurationS float64   `json:"run_duration_s"`
	Rounds    int       `json:"rounds"`
	UDPRate   string    `json:"udp_rate"`
	TunnelMTU int       `json:"tunnel_mtu"`
	CPUs      int       `json:"cpus"`
	Kernel    string    `json:"kernel"`
	// Tree is the gozone checkout the binaries were built from: HEAD and
	// how many files differ from it (others' work in progress included).
	Tree    string         `json:"tree,omitempty"`
	Tests   []test         `json:"tests"`
	Paths   []*benchPath   `json:"paths"`
	Results []*cell        `json:"results"`
	Setup   []*setupResult `json:"setup"`
	// SetupSkipped: --setup=false; PathsSelected: --paths (empty: all).
	SetupSkipped  bool     `json:"setup_skipped,omitempty"`
	PathsSelected []string `json:"paths_selected,omitempty"`
	Problems      []string `json:"problems,omitempty"`
	// QueueCompare: gozone-direct-q2 vs -q1 per TCP test (both must run).
	QueueCompare []queueCompare `json:"tun_queues_q2_vs_q1,omitempty"`
	StealTotal   float64        `json:"steal_percent_whole_run"`
	// ProfileDir and ProfileNote (what the profiles cover): --profile.
	ProfileDir  string `json:"cpu_profile_dir,omitempty"`
	ProfileNote string `json:"cpu_profile_note,omitempty"`
}

// run builds the topologies, brings up every available path and measures.
// Problems that make figures missing (a run that failed, a path that
// carried nothing) are listed in report.Problems; run's error is for
// failures to measure at all.
func run(t testing.TB, cfg config) (*report, error) {
	t.Helper()
	ctx := t.Context()
	if _, err := exec.LookPath("iperf3"); err != nil {
		return nil, errNoIperf
	}
	netns.RequireRoot(t)
	rep := &report{
		Mode: "full", Started: time.Now().UTC(), DurationS: cfg.Duration.Seconds(), Rounds: cfg.Rounds,
		UDPRate: cfg.UDPRate, TunnelMTU: cfg.MTU, CPUs: runtime.NumCPU(), Kernel: kernel(),
		Tests: tests(cfg.UDPRate), SetupSkipped: cfg.SkipSetup, PathsSelected: cfg.Paths,
	}
	if cfg.Short {
		rep.Mode = "short"
	}
	stealStart, _ := readCPUTimes()

	dir, err := os.MkdirTemp("", "gozone-bench-")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	// Topology A: client behind an endpoint-independent NAT, gateway with a
	// routed (public) address, so raw wireguard-go can reach it without hole
	// punching. No delay, no loss. Built when a path on it runs (veth,
	// raw wireguard-go; the latter also for its set-up probes).
	var tpA *topo.Topology
	var wg *wgPair
	if cfg.selected(pathWireGuard) || cfg.selected(pathVeth) {
		tpA = topo.Build(t, topo.Options{ClientNAT: topo.NATEndpointIndependent, GatewayNAT: topo.NATNone})
		if err := errors.Join(startIperfServer(tpA.Gateway), startIperfServer(tpA.Resource)); err != nil {
			return nil, err
		}
	}
	if cfg.selected(pathWireGuard) {
		wgBin := cfg.WGBin
		if wgBin == "" {
			if wgBin, err = buildWireGuardGo(ctx, dir); err != nil {
				return nil, err
			}
		}
		if wg, err = setupRawWG(tpA, wgBin, cfg.MTU); err != nil {
			return nil, fmt.Errorf("raw wireguard-go: %w", err)
		}
		rep.Paths = append(rep.Paths, &benchPath{Name: pathWireGuard, Available: true, from: tpA.Client, to: tpA.Resource.IPv4,
			Desc:  fmt.Sprintf("raw wireguard-go point-to-point (MTU %d): client → gateway → resource", cfg.MTU),
			procs: []namedPid{{"wireguard-go client", wg.client.proc.Pid()}, {"wireguard-go gateway", wg.gateway.proc.Pid()}}})
	}
	if cfg.selected(pathVeth) {
		rep.Paths = append(rep.Paths, &benchPath{Name: pathVeth, Available: true, from: tpA.Client, to: tpA.Gateway.IPv4,
			Desc: "no tunnel: client → NAT → internet → gateway's address (the underlay the tunnels use)"})
	}

	root := moduleRoot()
	rep.Tree = treeState(ctx, root)
	missing := gozoneMissing(root)
	wantGozone := false
	for _, g := range gozonePathNames {
		wantGozone = wantGozone || cfg.selected(g.name)
	}
	var bins gozoneBins
	if missing == "" && wantGozone {
		if bins, err = buildGozone(ctx, root, dir); err != nil {
			missing = "not available: " + err.Error()
			rep.Problems = append(rep.Problems, missing)
		}
	}
	var direct *gozoneDeploy // for the set-up time
	var profiled []profiledDeploy
	for _, g := range gozonePathNames {
		if !cfg.selected(g.name) {
			continue
		}
		p := &benchPath{Name: g.name, Desc: g.desc, Note: missing}
		rep.Paths = append(rep.Paths, p)
		if missing != "" {
			continue
		}
		tp := topo.Build(t, topo.Options{ClientNAT: g.client, GatewayNAT: g.gateway})
		if err := startIperfServer(tp.Resource); err != nil {
			return nil, err
		}
		var profGW, profCL string
		if cfg.ProfileDir != "" {
			profGW, profCL = profileFiles(cfg.ProfileDir, g.name)
		}
		d, err := deployGozone(ctx, tp, bins, dir, g.tunThreads, profGW, profCL)
		if err != nil {
			p.Note = "failed to come up: " + err.Error()
			rep.Problems = append(rep.Problems, g.name+": "+p.Note)
			continue
		}
		p.Available, p.from, p.to, p.procs = true, tp.Client, tp.Resource.IPv4, d.procs(g.relayed)
		p.relayHost, p.relayed = tp.Portal, g.relayed
		if direct == nil && !g.relayed {
			direct = d
		}
		if cfg.ProfileDir != "" {
			profiled = append(profiled, profiledDeploy{path: p, d: d})
		}
	}
	if cfg.ProfileDir != "" {
		rep.ProfileDir = cfg.ProfileDir
		rep.ProfileNote = "the throughput runs only: SIGUSR2 before the first run and after the last"
	}

	var avail []*benchPath
	for _, p := range rep.Paths {
		if p.Available {
			p.cpuTicks = map[string]uint64{}
			avail = append(avail, p)
		}
	}
	rep.Problems = append(rep.Problems, signalProfiles(profiled)...) // start
	for _, tc := range rep.Tests {
		cells := map[string]*cell{}
		for _, p := range rep.Paths {
			c := &cell{Test: tc.Name, Path: p.Name, Available: p.Available}
			cells[p.Name] = c
			rep.Results = append(rep.Results, c)
		}
		// Alternate the paths within each round (A B A B …) so that a
		// swing in CPU steal hits all of them alike.
		for r := 0; r < cfg.Rounds; r++ {
			for _, p := range avail {
				if ctx.Err() != nil {
					return rep, ctx.Err()
				}
				rec := measure(ctx, p, tc, cfg.Duration)
				rec.Round = r
				if rec.Error != "" {
					rep.Problems = append(rep.Problems, fmt.Sprintf("%s/%s round %d: %s", tc.Name, p.Name, r, rec.Error))
				} else if rec.Bytes == 0 {
					rep.Problems = append(rep.Problems, fmt.Sprintf("%s/%s round %d: no traffic", tc.Name, p.Name, r))
				}
				cells[p.Name].Runs = append(cells[p.Name].Runs, rec)
			}
		}
		for _, p := range rep.Paths {
			c := cells[p.Name]
			summarize(c, cells[pathWireGuard], tc.UDP)
			if !tc.UDP {
				summarizeRetransmits(c, p)
			}
		}
	}
	for _, p := range avail {
		if len(p.procs) == 0 || p.bytes == 0 {
			continue
		}
		p.CPUSecondsPerGB = map[string]float64{}
		for _, np := range p.procs {
			p.CPUSecondsPerGB[np.name] = float64(p.cpuTicks[np.name]) / clockTicks / (float64(p.bytes) / 1e9)
		}
	}

	rep.Problems = append(rep.Problems, signalProfiles(profiled)...) // write

	if !cfg.SkipSetup {
		if err := measureSetup(ctx, rep, cfg, tpA, wg, direct, missing); err != nil {
			return rep, err
		}
	}

	if len(profiled) > 0 {
		finishProfiles(ctx, rep, profiled, bins, cfg.ProfileDir)
	}
	rep.QueueCompare = compareQueues(rep)
	stealEnd, _ := readCPUTimes()
	rep.StealTotal = stealPercent(stealStart, stealEnd)
	rep.ElapsedS = time.Since(rep.Started).Seconds()
	return rep, nil
}

// measure runs one iperf3 test on p and charges the path's processes' CPU.
func measure(ctx context.Context, p *benchPath, tc test, d time.Duration) runRec {
	before := map[string]uint64{}
	for _, np := range p.procs {
		before[np.name], _ = procCPUTicks(np.pid)
	}
	var rx0 uint64
	if p.relayHost != nil {
		rx0 = rxBytes(p.relayHost)
	}
	s0, _ := readCPUTimes()
	res, err := runIperf(ctx, p.from, p.to, tc, d)
	s1, _ := readCPUTimes()
	rec := runRec{iperfResult: res, StealPercent: stealPercent(s0, s1), BusyPercent: busyPercent(s0, s1)}
	if err != nil {
		rec.Error = err.Error()
		return rec
	}
	if p.relayHost != nil && res.Bytes > 0 {
		share := float64(rxBytes(p.relayHost)-rx0) / float64(res.Bytes)
		rec.RelayShare = &share
		switch {
		case p.relayed && share < 0.5:
			rec.Error = fmt.Sprintf("expected relayed, but the relay received only %.0f%% of the payload", 100*share)
		case !p.relayed && share > 0.5:
			rec.Error = fmt.Sprintf("expected direct, but the relay received %.0f%% of the payload", 100*share)
		}
	}
	for _, np := range p.procs {
		after, err := procCPUTicks(np.pid)
		if err == nil && after >= before[np.name] {
			p.cpuTicks[np.name] += after - before[np.name]
		}
	}
	p.bytes += res.Bytes
	return rec
}

// summarize fills a cell's medians and its ratio against wireguard-go,
// round by round.
func summarize(c, wg *cell, udp bool) {
	var gbps, loss, ratios []float64
	for _, r := range c.Runs {
		if r.Error != "" {
			continue
		}
		gbps = append(gbps, r.Gbps)
		loss = append(loss, r.LostPercent)
		if wg == nil {
			continue
		}
		for _, w := range wg.Runs {
			if w.Round == r.Round && w.Error == "" && w.Gbps > 0 {
				ratios = append(ratios, r.Gbps/w.Gbps)
			}
		}
	}
	if len(gbps) == 0 {
		return
	}
	c.MedianGbps = median(gbps)
	if udp {
		m := median(loss)
		c.MedianLossPercent = &m
	}
	if len(ratios) > 0 {
		m := median(ratios)
		c.MedianRatioVsWG = &m
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// treeState describes the checkout ("" when git cannot say).
func treeState(ctx context.Context, root string) string {
	if root == "" {
		return ""
	}
	head, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	st, err := exec.CommandContext(ctx, "git", "-C", root, "status", "--porcelain", "--untracked-files=normal").Output()
	if err != nil {
		return ""
	}
	n := 0
	for _, l := range strings.Split(string(st), "\n") {
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	return fmt.Sprintf("%s + %d uncommitted/untracked paths", strings.TrimSpace(string(head)), n)
}
