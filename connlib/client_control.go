package connlib

import (
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib/dns"
	"github.com/gozone/gozone/connlib/dns/p2pcontrol"
	"github.com/gozone/gozone/connlib/ippacket"
)

// clientAssignKey identifies one outstanding assigned_ips message.
type clientAssignKey struct {
	gateway, resource, name string
}

// pollAssignments takes the resolver's new or changed name → proxy IP
// assignments: the gateway serving the name's resource gets the IPs in its
// allowed IPs and an assigned_ips message (retried until answered).
func (s *clientState) pollAssignments() {
	touched := make(map[string]*clientGateway)
	for {
		a, ok := s.c.resolver.PollAssignment()
		if !ok {
			break
		}
		rid, ok := clientParseID(a.ResourceID)
		if !ok {
			continue
		}
		// A name that moved to another resource is no longer active there.
		for t := range s.active {
			if t.name == a.Name && t.rid != rid {
				delete(s.active, t)
			}
		}
		s.retrier.CancelIf(func(k clientAssignKey) bool { return k.name == a.Name && k.resource != a.ResourceID })
		gid, ok := s.resGateway[a.ResourceID]
		gw := s.gateways[gid]
		if !ok || gw == nil {
			continue
		}
		touched[gid] = gw
		if gw.connected {
			s.retrier.Schedule(clientAssignKey{gateway: gid, resource: a.ResourceID, name: a.Name})
		}
	}
	for _, gw := range touched {
		s.setAllowedIPs(gw)
	}
	if len(touched) > 0 {
		s.sendDueAssignments()
	}
}

// scheduleAssignments (re)sends assigned_ips for every name of a resource
// served by gw.
func (s *clientState) scheduleAssignments(gw *clientGateway, resourceID string) {
	r, ok := s.resources[resourceID]
	if !ok || r.Type != "dns" {
		return
	}
	for _, a := range s.c.resolver.Assignments(resourceID) {
		s.retrier.Schedule(clientAssignKey{gateway: gw.id, resource: resourceID, name: a.Name})
	}
}

// sendDueAssignments sends the assigned_ips messages whose (re)send time
// has come, through the tunnel to their gateway.
func (s *clientState) sendDueAssignments() {
	for _, k := range s.retrier.Due(nil) {
		gw := s.gateways[k.gateway]
		if gw == nil || !gw.connected {
			s.retrier.Cancel(k)
			continue
		}
		ips, ok := s.c.resolver.ProxyIPsOf(k.name)
		r, known := s.resources[k.resource]
		if !ok || !known {
			s.retrier.Cancel(k)
			continue
		}
		stack, _ := dns.ParseIPStack(r.IPStack)
		msg := p2pcontrol.AssignedIPs{Resource: k.resource, Domain: k.name, ProxyIPs: ips.AppendForStack(nil, stack)}
		pkt, err := p2pcontrol.AppendAssignedIPs(nil, msg)
		if err != nil {
			s.log.Warn("cannot encode assigned_ips", zap.String("name", k.name), zap.Error(err))
			s.retrier.Cancel(k)
			continue
		}
		if !s.ipv6.IsValid() || !gw.ipv6.IsValid() {
			s.retrier.Cancel(k)
			continue
		}
		clientSetControlAddrs(pkt, s.ipv6, gw.ipv6)
		s.c.pipe.InjectToPeer(pkt)
		s.log.Debug("sent assigned_ips", zap.String("gateway", gw.id), zap.String("name", k.name))
	}
}

// goodbye tells every connected gateway that the client is going away
// (p2p control event goodbye), so gateways drop the connection at once
// instead of waiting for ICE to time out. It waits briefly so WireGuard
// can send the packets before the node closes.
func (s *clientState) goodbye() {
	sent := 0
	for _, gid := range clientSortedKeys(s.gateways) {
		gw := s.gateways[gid]
		if !gw.connected || !s.ipv6.IsValid() || !gw.ipv6.IsValid() {
			continue
		}
		pkt := p2pcontrol.AppendGoodbye(nil)
		clientSetControlAddrs(pkt, s.ipv6, gw.ipv6)
		if s.c.pipe.InjectToPeer(pkt) {
			sent++
		}
	}
	if sent > 0 {
		s.log.Info("sent goodbye", zap.Int("gateways", sent))
		time.Sleep(clientGoodbyeWait)
	}
}

// clientGoodbyeWait is how long shutdown waits for goodbyes to leave.
const clientGoodbyeWait = 200 * time.Millisecond

// onControl handles an in-tunnel control packet from a gateway.
func (s *clientState) onControl(pkt []byte) {
	src := netip.AddrFrom16([16]byte(pkt[8:24])).Unmap()
	// p2pcontrol parses Firezone's "::" form; our copy is ours to rewrite.
	clientSetControlAddrs(pkt, netip.IPv6Unspecified(), netip.IPv6Unspecified())
	m, err := p2pcontrol.Decode(pkt)
	if err != nil {
		s.log.Debug("dropping malformed control packet", zap.Error(err))
		return
	}
	switch m.Event {
	case p2pcontrol.EventDomainStatus:
		st := m.DomainStatus
		gid := s.resGateway[st.Resource]
		if !s.retrier.Ack(clientAssignKey{gateway: gid, resource: st.Resource, name: st.Domain}) {
			s.log.Debug("unsolicited domain_status", zap.String("name", st.Domain))
		}
		rid, ok := clientParseID(st.Resource)
		if !ok {
			return
		}
		t := clientTarget{rid: rid, name: st.Domain}
		if st.Status != p2pcontrol.StatusActive {
			// The gateway could not resolve the name: what waits for it
			// gets "network unreachable", as Firezone answers proxy IPs
			// without a real address.
			s.log.Warn("gateway cannot serve DNS resource name", zap.String("name", st.Domain), zap.String("gateway", gid))
			delete(s.active, t)
			s.publish()
			pkts := s.c.pending.Take(t)
			s.unreachable(pkts, ippacket.NetUnreachable)
			s.c.pending.Release(pkts)
			return
		}
		if !s.active[t] {
			s.active[t] = true
			s.publish()
		}
		s.flush(rid)
	case p2pcontrol.EventGoodbye:
		for _, gw := range s.gateways {
			if gw.ipv6 == src || gw.ipv4 == src {
				s.log.Info("gateway said goodbye", zap.String("gateway", gw.id))
				_ = s.c.node.CloseConnection(gw.id)
				return
			}
		}
	}
}
