package devportal

import (
	"encoding/json"
	"errors"
	"net"

	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib/portal"
	"github.com/gozone/gozone/examples/portal/relay"
	"github.com/gozone/gozone/phoenix"
)

// gatewayRelayExpiry and clientRelayExpiry: gateways' relay credentials
// expire at the fixed 2038 date (§4.4). Firezone ties clients' to their
// token's expiry; this portal's tokens do not expire, so clients get the
// same date.
const (
	gatewayRelayExpiry = relay.GatewayCredentialExpiry
	clientRelayExpiry  = relay.GatewayCredentialExpiry
)

// clientHandler serves topic "client" on /client/v2 (reference §4.4).
type clientHandler struct{ p *Portal }

var _ phoenix.ChannelHandler = clientHandler{}

// clientInit builds the init push. Called with p.mu held.
func (p *Portal) clientInit(c *clientConn) portal.ClientInit {
	res := portal.ClientResources{}
	if a := p.model.actors[c.actorID]; a != nil {
		for _, r := range p.model.visible(a) {
			res = append(res, p.model.clientResource(r))
		}
	}
	return portal.ClientInit{
		Interface:      p.model.clientInterface(c.ipv4, c.ipv6),
		Resources:      res,
		Relays:         p.relaysFor(c.publicKey, clientRelayExpiry),
		Authorizations: []portal.Authorization{},
		FlowLogs:       &defaultFlowLogs,
	}
}

func (h clientHandler) Join(ch *phoenix.Channel, _ json.RawMessage) (any, error) {
	p := h.p
	id, ok := ch.Identity().(*identity)
	if !ok {
		return nil, &phoenix.ReplyError{Reason: "unauthenticated"}
	}
	p.mu.Lock()
	if p.closed || p.model.clientTokens[id.token] == nil {
		p.mu.Unlock()
		return nil, &phoenix.ReplyError{Reason: "invalid_token"}
	}
	v4, v6, ok := p.ips.assign(id.deviceID)
	if !ok {
		p.mu.Unlock()
		return nil, &phoenix.ReplyError{Reason: "address_pool_exhausted"}
	}
	host, _, _ := net.SplitHostPort(ch.RemoteAddr())
	c := &clientConn{
		id: id.deviceID, actorID: id.ownerID, name: id.name, externalID: id.externalID,
		publicKey: id.publicKey, version: id.version, ipv4: v4, ipv6: v6,
		pskBase: pskBase(p.secret, id.deviceID), token: id.token, ch: ch,
		userAgent: ch.Header().Get("User-Agent"), remoteIP: host,
	}
	old := p.clients[c.id]
	if old != nil {
		// The same device reconnected before its old socket timed out: the
		// newcomer wins (a client's key changes on reset; it must be
		// reachable with the new one).
		p.dropClient(old, nil)
	}
	p.clients[c.id] = c
	init := p.clientInit(c)
	p.mu.Unlock()
	if old != nil {
		old.ch.Disconnect()
	}
	p.log.Info("client joined", zap.String("client_id", c.id), zap.String("name", c.name),
		zap.String("actor_id", c.actorID), zap.String("version", c.version), zap.Stringer("ipv4", v4))
	if err := ch.Push(portal.EventInit, init); err != nil {
		return nil, err
	}
	return nil, nil
}

func (h clientHandler) HandleIn(ch *phoenix.Channel, event string, payload json.RawMessage, r *phoenix.Replier) error {
	p := h.p
	m, err := portal.DecodeClientEgress(event, payload)
	if errors.Is(err, portal.ErrUnknownEvent) {
		p.log.Info("unknown client event", zap.String("event", event))
		return phoenix.ErrUnknownEvent
	}
	if err != nil && !errors.Is(err, portal.ErrObsolete) {
		return &phoenix.ReplyError{Reason: "invalid_payload"}
	}
	id := ch.Identity().(*identity)
	var o outbox
	p.mu.Lock()
	c := p.clients[id.deviceID]
	if c == nil || c.ch != ch {
		p.mu.Unlock()
		return &phoenix.ReplyError{Reason: "not_joined"}
	}
	switch pl := m.Payload.(type) {
	case *portal.RequestAuthorization:
		p.requestAuthorization(c, pl, &o)
	case *portal.GatewayCandidates:
		ev := portal.EventIceCandidates
		if m.Event == portal.EventInvalidateGatewayIceCandidates {
			ev = portal.EventInvalidateIceCandidates
		}
		p.candidatesToGateway(c, pl.GatewayID, ev, pl.Candidates, &o)
	case *portal.LegacyBroadcastToGateways:
		ev := portal.EventIceCandidates
		if m.Event == portal.EventBroadcastInvalidatedIceCandidates {
			ev = portal.EventInvalidateIceCandidates
		}
		for _, gid := range pl.GatewayIDs {
			p.candidatesToGateway(c, gid, ev, pl.Candidates, &o)
		}
	case *portal.Empty: // no_relays
		p.log.Info("client has no relays", zap.String("client_id", c.id))
		o.add(ch, portal.EventRelaysPresence, portal.RelaysPresence{DisconnectedIDs: []string{}, Connected: p.relaysFor(c.publicKey, clientRelayExpiry)})
	case *portal.SnownetCapabilities:
		c.iceless = pl.Iceless
	case *portal.ResolveDevicePoolDomain:
		// Device pools (client-to-client) are not implemented.
		o.add(ch, portal.EventDevicePoolDomainResolutionFailed, portal.DevicePoolDomainResolutionFailed{
			ResourceID: pl.ResourceID, Domain: pl.Domain, Reason: portal.ReasonNotFound})
	default:
		// Client-to-client candidates and legacy events: nothing to do.
	}
	p.mu.Unlock()
	p.send(o)
	return nil
}

// candidatesToGateway relays a client's candidates to a gateway it is
// paired with. Called with p.mu held.
func (p *Portal) candidatesToGateway(c *clientConn, gid, event string, cands []string, o *outbox) {
	g := p.gateways[gid]
	if g == nil || !p.paired(c.id, gid) {
		return
	}
	o.add(g.ch, event, portal.ClientCandidates{ClientID: c.id, Candidates: cands})
}

// dropClient forgets a client's pending authorizations. Its confirmed
// authorizations stay (the gateway keeps them too). Called with p.mu held.
func (p *Portal) dropClient(c *clientConn, _ *outbox) {
	delete(p.clients, c.id)
	for ref, pa := range p.pending {
		if pa.clientID == c.id {
			pa.timer.Stop()
			delete(p.pending, ref)
		}
	}
}

func (h clientHandler) Leave(ch *phoenix.Channel, reason error) {
	p := h.p
	id := ch.Identity().(*identity)
	var o outbox
	p.mu.Lock()
	if c := p.clients[id.deviceID]; c != nil && c.ch == ch {
		p.dropClient(c, &o)
	}
	p.mu.Unlock()
	p.log.Info("client left", zap.String("client_id", id.deviceID), zap.NamedError("reason", reason))
	p.send(o)
}
