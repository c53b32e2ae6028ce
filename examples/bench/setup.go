package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gozone/gozone/internal/topo"
)

// Connection set-up probes. A failed probe does not end the measurement:
// failures are counted, the median is over the successful probes, and for
// gozone the full gateway, client and portal logs of every failed probe go
// to one file (setupResult.FailureLog) so a rare failure can be studied.

// errNoMoreProbes marks a probe failure after which no later probe can
// work (the gateway exited, the UAPI socket failed): the probes stop.
var errNoMoreProbes = errors.New("set-up probes stopped")

// probeStats is the outcome of n probes.
type probeStats struct {
	ok     []time.Duration
	failed int
	errs   []string // one line per failed probe, "probe i: error"
	// stopped says why the probes ended early ("" when all n ran).
	stopped string
}

// runProbes runs probe n times; a failure is counted and reported to
// onFail, and the next probe runs, unless the context ends or probe says
// that nothing more can be measured (errNoMoreProbes).
func runProbes(ctx context.Context, n int, probe func(i int) (time.Duration, error), onFail func(i int, err error)) probeStats {
	var st probeStats
	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			st.stopped = fmt.Sprintf("interrupted after %d of %d probes", i, n)
			return st
		}
		d, err := probe(i)
		if err == nil {
			st.ok = append(st.ok, d)
			continue
		}
		if ctx.Err() != nil {
			st.stopped = fmt.Sprintf("interrupted after %d of %d probes", i, n)
			return st
		}
		st.failed++
		line, _, _ := strings.Cut(err.Error(), "\n")
		st.errs = append(st.errs, fmt.Sprintf("probe %d: %s", i+1, line))
		if onFail != nil {
			onFail(i, err)
		}
		if errors.Is(err, errNoMoreProbes) {
			st.stopped = fmt.Sprintf("stopped after probe %d of %d: %v", i+1, n, err)
			return st
		}
	}
	return st
}

// fill copies probe statistics into a set-up result.
func (st probeStats) fill(sr *setupResult) {
	sr.N, sr.Failed = len(st.ok), st.failed
	sr.AllMs = durationsMs(st.ok)
	sr.MedianMs = median(sr.AllMs)
	sr.Errors = st.errs
	sr.Note = st.stopped
}

// failureLog appends the logs of failed probes to one file, created on the
// first failure.
type failureLog struct {
	dir  string
	mu   sync.Mutex
	path string
	err  error
}

// add writes one failed probe's logs; sections are (title, text) pairs.
func (f *failureLog) add(header string, sections ...[2]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return
	}
	if f.path == "" {
		f.path = filepath.Join(f.dir, fmt.Sprintf("gozone-bench-setup-failures-%s-%d.log", time.Now().UTC().Format("20060102-150405"), os.Getpid()))
	}
	file, err := os.OpenFile(f.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		f.err = err
		return
	}
	defer file.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "=== %s (%s)\n", header, time.Now().UTC().Format(time.RFC3339Nano))
	for _, s := range sections {
		fmt.Fprintf(&b, "--- %s:\n%s", s[0], s[1])
		if !strings.HasSuffix(s[1], "\n") {
			b.WriteString("\n")
		}
	}
	b.WriteString("\n")
	if _, err := file.WriteString(b.String()); err != nil {
		f.err = err
	}
}

// setupProbe restarts the client at once (the previous one gets SIGTERM
// and is waited for) and times first packet → first reply on the new
// connection. The capture buffers start at the stop, so a failure's logs
// include the old client's goodbye as the gateway and portal saw it.
func (d *gozoneDeploy) setupProbe(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	d.gwProbe.Reset()
	d.clProbe.Reset()
	d.portalProbe.Reset()
	_ = d.client.Stop()
	if err := d.startClient(); err != nil {
		return 0, err
	}
	return d.firstReply(ctx, timeout)
}

// measureSetup runs the connection set-up probes: raw wireguard-go as the
// reference (handshake + one round trip) when its path runs, gozone direct
// when one of its direct paths came up. missing is why gozone's paths are
// unavailable ("" when they are built).
func measureSetup(ctx context.Context, rep *report, cfg config, tpA *topo.Topology, wg *wgPair, direct *gozoneDeploy, missing string) error {
	if wg != nil {
		echo := netip.AddrPortFrom(tpA.Resource.IPv4, 7)
		if err := tpA.Resource.UDPSourceEcho(echo); err != nil {
			return err
		}
		sr := &setupResult{Path: pathWireGuard, What: "new peer: first UDP packet → first reply (handshake + 1 RTT)"}
		st, err := wg.setupTimes(ctx, tpA.Client, echo, cfg.SetupN)
		st.fill(sr)
		if err != nil {
			sr.Note = err.Error()
			rep.Problems = append(rep.Problems, "wireguard-go set-up: "+err.Error())
		}
		if st.failed > 0 {
			rep.Problems = append(rep.Problems, fmt.Sprintf("wireguard-go set-up: %d of %d probes failed", st.failed, st.failed+len(st.ok)))
		}
		rep.Setup = append(rep.Setup, sr)
	}
	wantDirect := false
	for _, g := range gozonePathNames {
		wantDirect = wantDirect || (!g.relayed && cfg.selected(g.name))
	}
	if !wantDirect {
		return nil
	}
	gs := &setupResult{Path: "gozone-direct", What: "client restarted: first packet → first reply on a fresh connection", Note: missing}
	rep.Setup = append(rep.Setup, gs)
	if direct == nil {
		if missing == "" {
			gs.Note = "no gozone direct path came up"
		}
		return nil
	}
	dir := cfg.ProfileDir
	if dir == "" {
		dir = os.TempDir()
	}
	flog := &failureLog{dir: dir}
	st := runProbes(ctx, cfg.SetupN, func(int) (time.Duration, error) { return direct.setupProbe(ctx, cfg.SetupTimeout) },
		func(i int, err error) {
			flog.add(fmt.Sprintf("gozone set-up probe %d of %d failed: %v", i+1, cfg.SetupN, err),
				[2]string{"gateway log from the previous client's stop to the failure", direct.gwProbe.String()},
				[2]string{"client log (previous client's shutdown, then the new client)", direct.clProbe.String()},
				[2]string{"portal log over the same time", direct.portalProbe.String()})
		})
	st.fill(gs)
	if st.failed > 0 {
		gs.FailureLog = flog.path
		msg := fmt.Sprintf("gozone set-up: %d of %d probes failed; logs of each: %s", st.failed, st.failed+len(st.ok), flog.path)
		if flog.err != nil {
			gs.FailureLog = ""
			msg = fmt.Sprintf("gozone set-up: %d of %d probes failed; writing their logs failed: %v", st.failed, st.failed+len(st.ok), flog.err)
		}
		rep.Problems = append(rep.Problems, msg)
	}
	return nil
}

func durationsMs(ds []time.Duration) []float64 {
	var out []float64
	for _, d := range ds {
		out = append(out, float64(d.Microseconds())/1000)
	}
	return out
}

// captureBuf keeps everything a process wrote since the last Reset, up to
// captureMax bytes (later output is counted, not kept).
type captureBuf struct {
	mu      sync.Mutex
	b       []byte
	dropped int
}

const captureMax = 8 << 20

func (c *captureBuf) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := captureMax - len(c.b)
	switch {
	case room >= len(p):
		c.b = append(c.b, p...)
	case room > 0:
		c.b = append(c.b, p[:room]...)
		c.dropped += len(p) - room
	default:
		c.dropped += len(p)
	}
	return len(p), nil
}

func (c *captureBuf) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.b, c.dropped = c.b[:0], 0
}

func (c *captureBuf) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dropped > 0 {
		return fmt.Sprintf("%s\n[… %d more bytes not kept]\n", c.b, c.dropped)
	}
	return string(c.b)
}
