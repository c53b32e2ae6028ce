package connlib

import (
	"context"
	"net/netip"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib/portal"
	"github.com/gozone/gozone/connlib/routing"
)

// ClientBypasser is implemented by OS layers that can keep addresses out
// of the tunnel. While the internet resource routes everything into the
// tunnel, the session's own traffic (relays, the gateways' ICE candidates,
// upstream resolvers) must keep using the physical network, or it would
// loop through the tunnel it carries. The session calls SetBypass from its
// event loop with the complete list whenever it changes (nil when the
// internet resource is off). The portal's own address is the OS layer's to
// add: it knows the URL.
type ClientBypasser interface {
	SetBypass(ctx context.Context, addrs []netip.Addr) error
}

// internetActive reports whether the internet resource routes traffic.
func (s *clientState) internetActive() bool {
	if !s.c.cfg.ActivateInternetResource {
		return false
	}
	for _, r := range s.resources {
		if r.Type == portal.ResourceInternet {
			return true
		}
	}
	return false
}

// noteCandidate remembers a remote candidate's address for the bypass.
func (s *clientState) noteCandidate(sdp string) {
	f := strings.Fields(sdp)
	if len(f) < 6 {
		return
	}
	if a, err := netip.ParseAddr(f[4]); err == nil {
		if s.candIPs == nil {
			s.candIPs = make(map[netip.Addr]bool)
		}
		s.candIPs[a.Unmap()] = true
	}
}

// applyBypass pushes the bypass list to the OS layer when it changed.
func (s *clientState) applyBypass() {
	bp, ok := s.c.cfg.OS.(ClientBypasser)
	if !ok {
		return
	}
	var want []netip.Addr
	if s.internetActive() {
		add := func(a netip.Addr) {
			a = a.Unmap()
			if !a.IsValid() || a.IsLoopback() || a.IsUnspecified() || a.IsLinkLocalUnicast() {
				return
			}
			// Only addresses the internet resource would capture: a CIDR
			// resource's or a reserved range's address stays as it is.
			if _, kind := s.c.table.LookupKind(a); kind != routing.KindInternet {
				return
			}
			want = append(want, a)
		}
		for _, a := range s.relayIPs {
			add(a)
		}
		for a := range s.candIPs {
			add(a)
		}
		for _, u := range s.upstreams {
			add(u.Do53.Addr())
		}
		slices.SortFunc(want, func(a, b netip.Addr) int { return a.Compare(b) })
		want = slices.Compact(want)
	}
	if slices.Equal(want, s.bypass) {
		return
	}
	if err := bp.SetBypass(s.ctx, want); err != nil {
		s.log.Warn("keeping tunnel traffic out of the tunnel", zap.Error(err))
		return
	}
	s.bypass = want
}
