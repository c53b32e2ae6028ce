package main

import (
	"context"
	"net/netip"
	"time"

	"github.com/gozone/gozone/internal/topo"
)

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
		ds, err := wg.setupTimes(ctx, tpA.Client, echo, cfg.SetupN)
		sr := &setupResult{Path: pathWireGuard, What: "new peer: first UDP packet → first reply (handshake + 1 RTT)", N: len(ds)}
		sr.AllMs = durationsMs(ds)
		sr.MedianMs = median(sr.AllMs)
		if err != nil {
			sr.Note = err.Error()
			rep.Problems = append(rep.Problems, "wireguard-go set-up: "+err.Error())
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
	if direct != nil {
		ds, err := direct.setupTimes(ctx, cfg.SetupN)
		gs.N, gs.Note = len(ds), ""
		gs.AllMs = durationsMs(ds)
		gs.MedianMs = median(gs.AllMs)
		if err != nil {
			gs.Note = err.Error()
			rep.Problems = append(rep.Problems, "gozone set-up: "+err.Error())
		}
	} else if missing == "" {
		gs.Note = "no gozone direct path came up"
	}
	rep.Setup = append(rep.Setup, gs)
	return nil
}

func durationsMs(ds []time.Duration) []float64 {
	var out []float64
	for _, d := range ds {
		out = append(out, float64(d.Microseconds())/1000)
	}
	return out
}
