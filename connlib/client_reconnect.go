package connlib

import (
	"sort"

	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib/routing"
	"github.com/gozone/gozone/connlib/snownet"
)

// Eager reconnection. Firezone re-creates connections lazily, on the next
// packet for a resource. That leaves a TCP receiver (a download) stuck
// after a reset (roaming) or a failed connection (relay restart): the
// client has nothing to send, the server's retransmissions die at the
// gateway, and the flow only recovers when some packet happens to leave
// the client; examples/bench and the e2e tests saw ~26 s stalls (the
// server's retransmission timer had backed off to 12.8 s by then). So a
// connection that was carrying traffic when it went away is asked for
// again at once: after a failure as soon as it is reported, after a reset
// as soon as the portal is joined again. Idle connections stay lazy.

// gatewayResourceIDs lists the resources reached through gw.
func (s *clientState) gatewayResourceIDs(gw *clientGateway) []routing.ResourceID {
	ids := make([]string, 0, len(gw.resources))
	for id := range gw.resources {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]routing.ResourceID, 0, len(ids))
	for _, id := range ids {
		if rid, ok := clientParseID(id); ok {
			out = append(out, rid)
		}
	}
	return out
}

// activeGatewayResources lists the resources of every gateway whose
// connection is established and not idle, or still being set up (someone
// wants it), before a reset drops them.
func (s *clientState) activeGatewayResources() []routing.ResourceID {
	var out []routing.ResourceID
	for _, gid := range clientSortedKeys(s.gateways) {
		gw := s.gateways[gid]
		st, _, ok := s.c.node.State(gid)
		if ok && (st == snownet.StateConnecting || gw.connected && st == snownet.StateConnected) {
			out = append(out, s.gatewayResourceIDs(gw)...)
		}
	}
	return out
}

// reconnect asks for access to rids now, without waiting for a packet;
// while the portal is down the request waits for the next join.
func (s *clientState) reconnect(rids []routing.ResourceID, why string) {
	for _, rid := range rids {
		if _, known := s.ridToID[rid]; !known || s.ready[rid] {
			continue
		}
		if !s.joined {
			if s.reconnectWanted == nil {
				s.reconnectWanted = make(map[routing.ResourceID]bool)
			}
			s.reconnectWanted[rid] = true
			continue
		}
		s.log.Info("reconnecting to resource", zap.String("resource", s.ridToID[rid]), zap.String("after", why))
		s.c.pending.MarkRequested(rid)
		s.onIntent(rid)
	}
}

// reconnectOnJoin sends the requests reconnect postponed.
func (s *clientState) reconnectOnJoin() {
	if len(s.reconnectWanted) == 0 {
		return
	}
	rids := make([]routing.ResourceID, 0, len(s.reconnectWanted))
	for rid := range s.reconnectWanted {
		rids = append(rids, rid)
	}
	sort.Slice(rids, func(i, j int) bool { return s.ridToID[rids[i]] < s.ridToID[rids[j]] })
	s.reconnectWanted = nil
	s.reconnect(rids, "portal join")
}
