package connlib

import (
	"context"
	"strings"

	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib/ippacket"
	"github.com/gozone/gozone/connlib/portal"
	"github.com/gozone/gozone/connlib/routing"
	"github.com/gozone/gozone/connlib/snownet"
)

// onIntent handles the packet path's request for a resource that is not
// connected: ask the portal for access unless a connection is on its way.
func (s *clientState) onIntent(rid routing.ResourceID) {
	id, ok := s.ridToID[rid]
	if !ok {
		s.c.pending.Release(s.c.pending.TakeResource(rid, nil))
		return
	}
	if s.ready[rid] {
		s.flush(rid) // the packet raced with the connection coming up
		return
	}
	if gid, ok := s.resGateway[id]; ok {
		if gw := s.gateways[gid]; gw != nil && !gw.connected {
			return // authorized, connection being set up
		}
	}
	if !s.joined {
		// Asked again from onJoined for whatever is still waiting.
		s.log.Debug("portal not connected; access request postponed", zap.String("resource", id))
		return
	}
	var connected []string
	for _, gid := range clientSortedKeys(s.gateways) {
		if s.gateways[gid].connected {
			connected = append(connected, gid)
		}
	}
	if connected == nil {
		connected = []string{}
	}
	err := s.session.Send(portal.EventRequestAuthorization, portal.RequestAuthorization{ResourceID: id, ConnectedGatewayIDs: connected})
	if err != nil {
		s.log.Debug("requesting access", zap.String("resource", id), zap.Error(err))
		s.c.pending.AllowRequest(rid)
		return
	}
	s.log.Info("requesting access to resource", zap.String("resource", id), zap.String("name", s.resourceName(id)))
}

// onJoined re-requests access for resources whose packets waited while
// the portal was unreachable.
func (s *clientState) onJoined() {
	for _, rid := range s.c.pending.Resources() {
		s.onIntent(rid)
	}
	s.reconnectOnJoin()
}

func (s *clientState) onAuthorizationCreated(a *portal.AuthorizationCreated) {
	r, ok := s.resources[a.ResourceID]
	if !ok {
		s.log.Warn("authorization for an unknown resource ignored", zap.String("resource", a.ResourceID))
		return
	}
	pk, err1 := snownet.ParseKey(a.GatewayPublicKey)
	psk, err2 := snownet.ParseKey(a.PresharedKey)
	if err1 != nil || err2 != nil || a.GatewayID == "" {
		s.log.Warn("ignoring malformed authorization_created", zap.String("resource", a.ResourceID))
		return
	}
	rid, _ := clientParseID(a.ResourceID)
	delete(s.failures, a.ResourceID)
	if old, ok := s.resGateway[a.ResourceID]; ok && old != a.GatewayID {
		s.revoke(a.ResourceID)
	}
	gw := s.gateways[a.GatewayID]
	fresh := gw == nil
	if fresh {
		gw = &clientGateway{id: a.GatewayID, resources: make(map[string]bool)}
		s.gateways[a.GatewayID] = gw
	}
	gw.siteID = a.SiteID
	gw.ipv4, gw.ipv6 = a.GatewayIPv4.Addr, a.GatewayIPv6.Addr
	gw.resources[a.ResourceID] = true
	s.resGateway[a.ResourceID] = a.GatewayID
	params := snownet.ConnParams{
		Peer: a.GatewayID, PublicKey: pk, PresharedKey: psk,
		Local:  snownet.Credentials{Ufrag: a.ClientICECredentials.Username, Pwd: a.ClientICECredentials.Password},
		Remote: snownet.Credentials{Ufrag: a.GatewayICECredentials.Username, Pwd: a.GatewayICECredentials.Password},
		Role:   snownet.RoleControlling,
	}
	params.AllowedIPs = s.allowedIPs(gw)
	s.log.Info("authorization created", zap.String("resource", a.ResourceID), zap.String("name", r.Name),
		zap.String("gateway", a.GatewayID), zap.String("site", a.SiteID))
	same := !fresh && gw.params.Peer == params.Peer && gw.params.PublicKey == pk && gw.params.PresharedKey == psk &&
		gw.params.Local == params.Local && gw.params.Remote == params.Remote
	if same && s.c.node.SetAllowedIPs(gw.id, params.AllowedIPs) == nil {
		gw.params = params
		if gw.connected {
			s.ready[rid] = true
			s.scheduleAssignments(gw, a.ResourceID)
			s.publish()
			s.flush(rid)
		}
		s.publish()
		return
	}
	gw.connected = false
	gw.params = params
	if err := s.c.node.UpsertConnection(params); err != nil {
		s.log.Warn("connecting to gateway", zap.String("gateway", gw.id), zap.Error(err))
		s.dropGateway(gw.id)
		return
	}
	for _, cand := range s.heldCands[gw.id] {
		_ = s.c.node.AddRemoteCandidate(gw.id, cand)
	}
	delete(s.heldCands, gw.id)
	s.publish()
}

func (s *clientState) onAuthorizationFailed(f *portal.AuthorizationCreationFailed) {
	fields := []zap.Field{zap.String("resource", f.ResourceID), zap.String("name", s.resourceName(f.ResourceID)),
		zap.String("reason", f.Reason)}
	if len(f.ViolatedProperties) > 0 {
		fields = append(fields, zap.String("violated", strings.Join(f.ViolatedProperties, ",")))
	}
	s.log.Warn("access to resource refused: "+clientFailureText(f.Reason), fields...)
	rid, ok := clientParseID(f.ResourceID)
	if !ok {
		return
	}
	if _, known := s.resources[f.ResourceID]; known {
		s.failures[f.ResourceID] = f.Reason
		s.updateStatus()
	}
	kind := ippacket.HostUnreachable
	if f.Reason == portal.ReasonForbidden || f.Reason == portal.ReasonNotFound {
		kind = ippacket.Prohibited
	}
	pkts := s.c.pending.TakeResource(rid, nil)
	s.unreachable(pkts, kind)
	s.c.pending.Release(pkts)
}

// clientFailureText says in words why the portal refused access.
func clientFailureText(reason string) string {
	switch reason {
	case portal.ReasonForbidden:
		return "no policy allows this device to use the resource"
	case portal.ReasonNotFound:
		return "the resource does not exist (any more)"
	case portal.ReasonOffline:
		return "no gateway of the resource's sites is online"
	case portal.ReasonVersionMismatch:
		return "no gateway runs a version compatible with this client"
	case portal.ReasonDisabled:
		return "the resource is disabled"
	}
	return "the portal refused the request"
}

// unreachable answers packets that cannot be delivered with ICMP errors on
// the Tun.
func (s *clientState) unreachable(pkts [][]byte, kind ippacket.Unreachable) {
	if len(pkts) == 0 {
		return
	}
	var out [][]byte
	for _, b := range pkts {
		p, err := ippacket.Parse(b)
		if err != nil {
			continue
		}
		buf := make([]byte, ippacket.ICMPErrorLen(p))
		n, err := ippacket.BuildUnreachable(buf, p, kind, clientNoAddr)
		if err != nil {
			continue
		}
		out = append(out, buf[:n])
	}
	if len(out) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, clientInjectTimeout)
	defer cancel()
	if _, err := s.c.pipe.InjectToTun(ctx, out, 0); err != nil {
		s.log.Debug("writing ICMP errors", zap.Error(err))
	}
}

func (s *clientState) onCandidates(m *portal.GatewayCandidates) {
	gw := s.gateways[m.GatewayID]
	for _, cand := range m.Candidates {
		s.noteCandidate(cand)
	}
	s.applyBypass()
	for _, cand := range m.Candidates {
		if gw == nil {
			if len(s.heldCands[m.GatewayID]) < 64 {
				s.heldCands[m.GatewayID] = append(s.heldCands[m.GatewayID], cand)
			}
			continue
		}
		if err := s.c.node.AddRemoteCandidate(m.GatewayID, cand); err != nil {
			s.log.Debug("skipping remote candidate", zap.String("gateway", m.GatewayID), zap.Error(err))
		}
	}
}

func (s *clientState) onInvalidateCandidates(m *portal.GatewayCandidates) {
	for _, cand := range m.Candidates {
		_ = s.c.node.RemoveRemoteCandidate(m.GatewayID, cand)
	}
}

func (s *clientState) onNodeEvent(ev snownet.Event) {
	switch ev.Kind {
	case snownet.EventNewCandidate:
		s.session.SendCandidates(portal.EventNewGatewayIceCandidates, portal.GatewayCandidates{GatewayID: ev.Peer, Candidates: []string{ev.Candidate}})
	case snownet.EventInvalidateCandidate:
		s.session.SendCandidates(portal.EventInvalidateGatewayIceCandidates, portal.GatewayCandidates{GatewayID: ev.Peer, Candidates: []string{ev.Candidate}})
	case snownet.EventConnectionEstablished:
		gw := s.gateways[ev.Peer]
		if gw == nil {
			return
		}
		gw.connected, gw.path = true, ev.Path
		s.log.Info("connection established", zap.String("gateway", gw.id), zap.String("site", gw.siteID), zap.Stringer("path", ev.Path))
		var rids []routing.ResourceID
		for id := range gw.resources {
			rid, _ := clientParseID(id)
			s.ready[rid] = true
			rids = append(rids, rid)
			s.scheduleAssignments(gw, id)
		}
		s.publish()
		for _, rid := range rids {
			s.flush(rid)
		}
		s.sendDueAssignments()
	case snownet.EventConnectionFailed, snownet.EventConnectionClosed:
		gw := s.gateways[ev.Peer]
		if gw == nil {
			return
		}
		s.log.Info("connection to gateway ended", zap.String("gateway", ev.Peer), zap.Stringer("event", ev.Kind), zap.String("reason", ev.Reason))
		var again []routing.ResourceID
		if ev.Kind == snownet.EventConnectionFailed && ev.Active && gw.connected {
			again = s.gatewayResourceIDs(gw)
		}
		s.dropGateway(ev.Peer)
		s.reconnect(again, "connection failed")
	case snownet.EventNoRelays:
		if err := s.session.Send(portal.EventNoRelays, portal.Empty{}); err != nil {
			s.log.Debug("sending no_relays", zap.Error(err))
		}
	}
}

// dropGateway forgets a gateway and every authorization through it; the
// next packet for those resources asks the portal again.
func (s *clientState) dropGateway(gid string) {
	gw := s.gateways[gid]
	if gw == nil {
		return
	}
	for id := range gw.resources {
		rid, _ := clientParseID(id)
		delete(s.resGateway, id)
		delete(s.ready, rid)
		for t := range s.active {
			if t.rid == rid {
				delete(s.active, t)
			}
		}
		s.c.pending.AllowRequest(rid)
	}
	s.retrier.CancelIf(func(k clientAssignKey) bool { return k.gateway == gid })
	s.dns.forgetGateway(gw)
	delete(s.gateways, gid)
	delete(s.heldCands, gid)
	s.publish()
}

// flush sends the packets waiting for rid that may go now: all of a CIDR
// or internet resource, and those of DNS names the gateway confirmed.
func (s *clientState) flush(rid routing.ResourceID) {
	if !s.ready[rid] {
		return
	}
	pkts := s.c.pending.TakeResource(rid, func(t clientTarget) bool { return t.name == "" || s.active[t] })
	for _, p := range pkts {
		s.c.pipe.InjectToPeer(p)
	}
	s.c.pending.Release(pkts)
}

// reset starts over after a network change (reference §2.7): connections
// closed, new key, sockets rebound, portal reconnected with the new key.
func (s *clientState) reset(reason string) {
	s.log.Info("resetting the tunnel", zap.String("reason", reason))
	again := s.activeGatewayResources()
	for _, gid := range clientSortedKeys(s.gateways) {
		s.dropGateway(gid)
	}
	if _, err := s.c.node.Reset(); err != nil {
		s.log.Error("resetting the tunnel", zap.Error(err))
	}
	s.dns.reset()
	s.stopPortal()
	if err := s.startPortal(); err != nil {
		s.log.Error("reconnecting to the portal", zap.Error(err))
	}
	s.reconnect(again, "reset") // sent once the portal is joined again
}
