package connlib

import (
	"context"
	"net/netip"
	"reflect"
	"time"

	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib/acl"
	"github.com/gozone/gozone/connlib/portal"
	"github.com/gozone/gozone/connlib/snownet"
)

// handlePortal applies one decoded portal push (reference §4.3).
func (g *Gateway) handlePortal(ctx context.Context, msg portal.Message) {
	switch p := msg.Payload.(type) {
	case *portal.GatewayInit:
		g.applyInit(ctx, p)
	case *portal.CreateAuthorization:
		g.createAuthorization(p)
	case *portal.ClientCandidates:
		c := g.clients[p.ClientID]
		if c == nil {
			g.log.Debug("candidates for unknown client", zap.String("client", p.ClientID))
			return
		}
		for _, sdp := range p.Candidates {
			var err error
			if msg.Event == portal.EventInvalidateIceCandidates {
				err = g.node.RemoveRemoteCandidate(p.ClientID, sdp)
			} else {
				err = g.node.AddRemoteCandidate(p.ClientID, sdp)
			}
			if err != nil {
				g.log.Debug("skipping candidate", zap.String("client", p.ClientID), zap.Error(err))
			}
		}
	case *portal.RejectAccess:
		g.rejectAccess(p.ClientID, p.ResourceID)
	case *portal.RelaysPresence:
		g.updateRelays(p.Connected, p.DisconnectedIDs, false)
	case *portal.GatewayResource:
		g.resourceUpdated(*p)
	case *portal.Disconnect:
		g.log.Info("portal asked to disconnect", zap.String("reason", p.Reason))
	default:
		g.log.Debug("unhandled portal message", zap.String("event", msg.Event))
	}
}

func (g *Gateway) applyInit(ctx context.Context, in *portal.GatewayInit) {
	v4, v6 := in.Interface.IPv4.Addr, in.Interface.IPv6.Addr
	settings := GatewayInterface{IPv4: v4, IPv6: v6, Routes: []netip.Prefix{gwTunnelV4, gwTunnelV6}}
	if g.cfg.Interface != nil && !reflect.DeepEqual(settings, g.iface) {
		if err := g.cfg.Interface.SetInterface(ctx, settings); err != nil {
			g.log.Error("configuring the TUN interface", zap.Error(err))
		}
	}
	if settings.IPv4 != g.iface.IPv4 || settings.IPv6 != g.iface.IPv6 || len(g.dnsConns) == 0 {
		g.iface = settings
		g.acl.SetGatewayAddrs(v4, v6)
		g.hook.setGatewayAddrs(v4, v6)
		g.startDNSServer(ctx)
	}
	g.iface = settings
	g.updateRelays(in.Relays, nil, true)

	auths := make([]acl.Authorization, 0, len(in.Authorizations))
	for _, a := range in.Authorizations {
		auths = append(auths, acl.Authorization{
			Client: gwID(a.ClientID), Resource: gwID(a.ResourceID), Expires: gwUnixTime(a.ExpiresAt),
		})
	}
	emptied := g.acl.RetainAuthorizations(auths)
	// Keep the session's view of resources per client in line with the acl.
	keep := make(map[[2][16]byte]bool, len(auths))
	for _, a := range auths {
		keep[[2][16]byte{a.Client, a.Resource}] = true
	}
	for _, c := range g.clients {
		for rid := range c.resources {
			if !keep[[2][16]byte{c.aclID, rid}] {
				delete(c.resources, rid)
			}
		}
	}
	g.closeEmptied(emptied)
	g.inited.Store(true)
	g.log.Info("portal init applied", zap.Stringer("ipv4", v4), zap.Stringer("ipv6", v6),
		zap.Int("relays", len(g.relays)), zap.Int("authorizations", len(auths)))
}

// updateRelays updates the node's relays: gone are removed, list is
// added (or replaced when its entries changed). With full, relays not
// listed are removed too (init is a full resync).
func (g *Gateway) updateRelays(list portal.Relays, gone []string, full bool) {
	next := make(map[string][]snownet.Relay)
	for _, r := range list {
		ap, err := r.AddrPort()
		if err != nil {
			continue
		}
		next[r.ID] = append(next[r.ID], snownet.Relay{ID: r.ID, Addr: ap, Username: r.Username, Password: r.Password})
	}
	var removed []string
	var added []snownet.Relay
	for _, id := range gone {
		if _, ok := g.relays[id]; ok {
			removed = append(removed, id)
			delete(g.relays, id)
		}
	}
	if full {
		for id := range g.relays {
			if _, ok := next[id]; !ok {
				removed = append(removed, id)
				delete(g.relays, id)
			}
		}
	}
	for id, rs := range next {
		if old, ok := g.relays[id]; ok && reflect.DeepEqual(old, rs) {
			continue
		}
		if _, ok := g.relays[id]; ok {
			removed = append(removed, id)
		}
		g.relays[id] = rs
		added = append(added, rs...)
	}
	if len(added) == 0 && len(removed) == 0 {
		return
	}
	if err := g.node.UpdateRelays(added, removed); err != nil {
		g.log.Warn("updating relays", zap.Error(err))
	}
}

func gwUnixTime(p *int64) time.Time {
	if p == nil || *p <= 0 {
		return time.Time{}
	}
	return time.Unix(*p, 0)
}

// gwACLResource converts a portal resource; ok=false for a bad address.
func gwACLResource(r portal.GatewayResource) (acl.Resource, bool) {
	out := acl.Resource{ID: gwID(r.ID)}
	switch r.Type {
	case portal.ResourceCIDR:
		p, err := netip.ParsePrefix(r.Address)
		if err != nil {
			a, err2 := netip.ParseAddr(r.Address)
			if err2 != nil {
				return out, false
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out.Kind, out.Prefix = acl.KindCIDR, p.Masked()
	case portal.ResourceDNS:
		out.Kind = acl.KindDNS
	case portal.ResourceInternet:
		out.Kind = acl.KindInternet
	default:
		return out, false
	}
	for _, f := range r.Filters {
		var proto acl.Protocol
		switch f.Protocol {
		case portal.ProtocolTCP:
			proto = acl.TCP
		case portal.ProtocolUDP:
			proto = acl.UDP
		case portal.ProtocolICMP:
			proto = acl.ICMP
		default:
			// An unknown protocol matches nothing, but it must not turn
			// the list into an empty permit-all one: keep an empty range.
			out.Filters = append(out.Filters, acl.Filter{Protocol: acl.TCP, PortStart: 1, PortEnd: 0})
			continue
		}
		out.Filters = append(out.Filters, acl.Filter{Protocol: proto, PortStart: f.PortStart, PortEnd: f.PortEnd})
	}
	return out, true
}

func (g *Gateway) createAuthorization(ca *portal.CreateAuthorization) {
	log := g.log.With(zap.String("client", ca.Client.ID), zap.String("resource", ca.Resource.ID))
	log.Info("authorization requested", zap.String("resource_type", ca.Resource.Type))
	res, ok := gwACLResource(ca.Resource)
	if !ok {
		log.Warn("authorization failed", zap.String("reason", "bad resource address"))
		return
	}
	pk, err := snownet.ParseKey(ca.Client.PublicKey)
	if err != nil {
		log.Warn("authorization failed", zap.String("reason", "bad client public key"))
		return
	}
	psk, err := snownet.ParseKey(ca.Client.PresharedKey)
	if err != nil {
		log.Warn("authorization failed", zap.String("reason", "bad preshared key"))
		return
	}
	if !g.node.HasRelays() {
		// Reference §2.2 step 3: without relays the gateway asks for some
		// and does not answer; the client will ask again.
		log.Warn("authorization failed", zap.String("reason", "no relays"))
		if err := g.session.Send(portal.EventNoRelays, portal.Empty{}); err != nil {
			log.Debug("no_relays not sent", zap.Error(err))
		}
		return
	}
	v4, v6 := ca.Client.IPv4.Addr, ca.Client.IPv6.Addr
	cid := gwID(ca.Client.ID)
	var aerr error
	g.acl.Update(func(tx *acl.Tx) {
		if aerr = tx.UpsertResource(res); aerr != nil {
			return
		}
		tx.UpsertClient(cid, v4, v6)
		aerr = tx.Authorize(cid, res.ID, gwUnixTime(ca.ExpiresAt))
	})
	if aerr != nil {
		log.Warn("authorization failed", zap.Error(aerr))
		return
	}
	c := g.clients[ca.Client.ID]
	if c == nil {
		c = &gwClient{id: ca.Client.ID, aclID: cid, resources: make(map[acl.ResourceID]portal.GatewayResource), lastStatus: map[string]bool{}}
		g.clients[ca.Client.ID] = c
	}
	c.v4, c.v6 = v4, v6
	c.resources[res.ID] = ca.Resource
	g.publishClients()

	var allowed []netip.Prefix
	if v4.IsValid() {
		allowed = append(allowed, netip.PrefixFrom(v4, 32))
	}
	if v6.IsValid() {
		allowed = append(allowed, netip.PrefixFrom(v6, 128))
	}
	err = g.node.UpsertConnection(snownet.ConnParams{
		Peer: ca.Client.ID, PublicKey: pk, PresharedKey: psk,
		Local:  snownet.Credentials{Ufrag: ca.GatewayICECredentials.Username, Pwd: ca.GatewayICECredentials.Password},
		Remote: snownet.Credentials{Ufrag: ca.ClientICECredentials.Username, Pwd: ca.ClientICECredentials.Password},
		Role:   snownet.RoleControlled, AllowedIPs: allowed,
	})
	if err != nil {
		log.Warn("authorization failed", zap.String("reason", "connection"), zap.Error(err))
		return
	}
	if err := g.session.Send(portal.EventAuthorizationCreated, portal.AuthorizationRef{Ref: ca.Ref}); err != nil {
		log.Warn("authorization_created not sent", zap.Error(err))
		return
	}
	log.Info("authorization created")
}

func (g *Gateway) rejectAccess(clientID, resourceID string) {
	c := g.clients[clientID]
	rid := gwID(resourceID)
	remaining, err := g.acl.Revoke(gwID(clientID), rid)
	if c != nil {
		delete(c.resources, rid)
	}
	g.log.Info("access rejected", zap.String("client", clientID), zap.String("resource", resourceID), zap.Int("remaining", remaining))
	if err == nil && remaining == 0 {
		g.removeClient(clientID, true)
	}
}

func (g *Gateway) resourceUpdated(r portal.GatewayResource) {
	res, ok := gwACLResource(r)
	if !ok {
		g.log.Warn("resource_updated with a bad address", zap.String("resource", r.ID))
		return
	}
	if err := g.acl.UpsertResource(res); err != nil {
		g.log.Warn("resource_updated", zap.Error(err))
		return
	}
	for _, c := range g.clients {
		if _, ok := c.resources[res.ID]; ok {
			c.resources[res.ID] = r
		}
	}
	g.log.Info("resource updated", zap.String("resource", r.ID))
}

func (g *Gateway) handleNode(ev snownet.Event) {
	switch ev.Kind {
	case snownet.EventNewCandidate, snownet.EventInvalidateCandidate:
		event := portal.EventBroadcastIceCandidates
		if ev.Kind == snownet.EventInvalidateCandidate {
			event = portal.EventBroadcastInvalidatedIceCandidates
		}
		g.session.SendCandidates(event, portal.BroadcastCandidates{ClientIDs: []string{ev.Peer}, Candidates: []string{ev.Candidate}})
	case snownet.EventConnectionEstablished:
		if c := g.clients[ev.Peer]; c != nil {
			c.connected = true
		}
		g.log.Info("connection established", zap.String("client", ev.Peer), zap.Stringer("path", ev.Path))
	case snownet.EventConnectionFailed, snownet.EventConnectionClosed:
		// The authorization state is kept (reference §2.3): the client
		// reconnects through a new authorization request.
		if c := g.clients[ev.Peer]; c != nil {
			c.connected = false
		}
		g.log.Info("connection ended", zap.String("client", ev.Peer), zap.Stringer("event", ev.Kind), zap.String("reason", ev.Reason))
	case snownet.EventNoRelays:
		if err := g.session.Send(portal.EventNoRelays, portal.Empty{}); err != nil {
			g.log.Debug("no_relays not sent", zap.Error(err))
		}
	}
}

// tick runs the 1 Hz housekeeping: authorization expiry, NAT expiry.
func (g *Gateway) tick() {
	now := g.clock.Now()
	g.closeEmptied(g.acl.ExpireAuthorizations(now))
	g.nat.expire(now)
}

func (g *Gateway) closeEmptied(ids []acl.ClientID) {
	if len(ids) == 0 {
		return
	}
	set := make(map[acl.ClientID]bool, len(ids))
	for _, id := range ids {
		set[id] = true
	}
	for _, c := range g.clients {
		if set[c.aclID] {
			g.log.Info("client has no authorizations left", zap.String("client", c.id))
			g.removeClient(c.id, true)
		}
	}
}

// removeClient forgets a client: goodbye (when asked), the connection, its
// acl entry, flows and NAT state.
func (g *Gateway) removeClient(id string, goodbye bool) {
	c := g.clients[id]
	if c == nil {
		return
	}
	if goodbye {
		g.sendGoodbye(c)
	}
	delete(g.clients, id)
	g.acl.RemoveClient(c.aclID)
	g.publishClients()
	g.nat.removeClient(c.v4, c.v6)
	if c.v4.IsValid() {
		g.tracker.ForgetAddr(c.v4)
	}
	if c.v6.IsValid() {
		g.tracker.ForgetAddr(c.v6)
	}
	// Let WireGuard send the goodbye before the connection goes.
	node := g.node
	time.AfterFunc(200*time.Millisecond, func() { _ = node.CloseConnection(id) })
}

// goodbyeAll tells every client the gateway is going away and gives
// WireGuard a moment to send it (reference §6.1 signals).
func (g *Gateway) goodbyeAll() {
	sent := 0
	for _, c := range g.clients {
		if g.sendGoodbye(c) {
			sent++
		}
	}
	if sent > 0 {
		g.log.Info("sent goodbye", zap.Int("clients", sent))
		time.Sleep(300 * time.Millisecond)
	}
}

// publishClients rebuilds the packet path's address → client index.
func (g *Gateway) publishClients() {
	m := make(map[netip.Addr]*acl.Client, 2*len(g.clients))
	for _, c := range g.clients {
		h := g.acl.Client(c.aclID)
		if h == nil {
			continue
		}
		if c.v4.IsValid() {
			m[c.v4] = h
		}
		if c.v6.IsValid() {
			m[c.v6] = h
		}
	}
	g.hook.setClients(m)
}
