package devportal

import (
	"encoding/json"
	"errors"

	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib/portal"
	"github.com/gozone/gozone/phoenix"
)

// gatewayHandler serves topic "gateway" on /gateway/v2 (reference §4.3).
type gatewayHandler struct{ p *Portal }

var _ phoenix.ChannelHandler = gatewayHandler{}

// gatewayInit builds the init push. Called with p.mu held.
func (p *Portal) gatewayInit(g *gatewayConn) portal.GatewayInit {
	return portal.GatewayInit{
		Interface:      portal.GatewayInterface{IPv4: portal.IP{Addr: g.ipv4}, IPv6: portal.IP{Addr: g.ipv6}},
		Config:         &portal.GatewayConfig{IPv4MasqueradeEnabled: true, IPv6MasqueradeEnabled: true},
		AccountSlug:    p.model.cfg.Account.Slug,
		Relays:         p.relaysFor(g.publicKey, gatewayRelayExpiry),
		Authorizations: p.gatewayAuthorizations(g.id),
		FlowLogs:       &defaultFlowLogs,
	}
}

var defaultFlowLogs = portal.FlowLogs{APIURL: "http://127.0.0.1/flow-logs-disabled", UploadIntervalSecs: 60, UploadBatchSize: 1000}

func (h gatewayHandler) Join(ch *phoenix.Channel, _ json.RawMessage) (any, error) {
	p := h.p
	id, ok := ch.Identity().(*identity)
	if !ok {
		return nil, &phoenix.ReplyError{Reason: "unauthenticated"}
	}
	p.mu.Lock()
	if _, dup := p.gateways[id.deviceID]; dup || p.closed {
		p.mu.Unlock()
		return nil, &phoenix.ReplyError{Reason: "gateway_already_connected"}
	}
	if p.model.gatewayTokens[id.token] == nil {
		p.mu.Unlock() // token removed by a reload since the upgrade
		return nil, &phoenix.ReplyError{Reason: "invalid_token"}
	}
	v4, v6, ok := p.ips.assign(id.deviceID)
	if !ok {
		p.mu.Unlock()
		return nil, &phoenix.ReplyError{Reason: "address_pool_exhausted"}
	}
	g := &gatewayConn{
		id: id.deviceID, siteID: id.ownerID, name: id.name, externalID: id.externalID,
		publicKey: id.publicKey, version: id.version, ipv4: v4, ipv6: v6,
		pskBase: pskBase(p.secret, id.deviceID), token: id.token, ch: ch,
	}
	p.gateways[g.id] = g
	init := p.gatewayInit(g)
	p.mu.Unlock()
	p.log.Info("gateway joined", zap.String("gateway_id", g.id), zap.String("name", g.name),
		zap.String("site_id", g.siteID), zap.String("version", g.version), zap.Stringer("ipv4", v4))
	// Sent after the join reply (phoenix queues pushes made during Join).
	if err := ch.Push(portal.EventInit, init); err != nil {
		return nil, err
	}
	return nil, nil
}

func (h gatewayHandler) HandleIn(ch *phoenix.Channel, event string, payload json.RawMessage, r *phoenix.Replier) error {
	p := h.p
	m, err := portal.DecodeGatewayEgress(event, payload)
	if errors.Is(err, portal.ErrUnknownEvent) {
		p.log.Info("unknown gateway event", zap.String("event", event))
		return phoenix.ErrUnknownEvent
	}
	if err != nil && !errors.Is(err, portal.ErrObsolete) {
		return &phoenix.ReplyError{Reason: "invalid_payload"}
	}
	id := ch.Identity().(*identity)
	var o outbox
	reply := ""
	p.mu.Lock()
	g := p.gateways[id.deviceID]
	if g == nil || g.ch != ch {
		p.mu.Unlock()
		return &phoenix.ReplyError{Reason: "not_joined"}
	}
	switch pl := m.Payload.(type) {
	case *portal.AuthorizationRef:
		reply = p.authorizationCreated(g, pl.Ref, &o)
		if reply == "" {
			reply = "ok"
		}
	case *portal.BroadcastCandidates:
		ev := portal.EventIceCandidates
		if m.Event == portal.EventBroadcastInvalidatedIceCandidates {
			ev = portal.EventInvalidateIceCandidates
		}
		for _, cid := range pl.ClientIDs {
			if c := p.clients[cid]; c != nil && p.paired(cid, g.id) {
				o.add(c.ch, ev, portal.GatewayCandidates{GatewayID: g.id, Candidates: pl.Candidates})
			}
		}
	case *portal.Empty: // no_relays
		p.log.Info("gateway has no relays", zap.String("gateway_id", g.id))
		o.add(ch, portal.EventRelaysPresence, portal.RelaysPresence{DisconnectedIDs: []string{}, Connected: p.relaysFor(g.publicKey, gatewayRelayExpiry)})
	case *portal.SnownetCapabilities:
		g.iceless = pl.Iceless
	default:
		// connection_ready and other legacy events: accepted, nothing to do.
	}
	p.mu.Unlock()
	switch reply {
	case "":
	case "ok":
		_ = r.OK(nil)
	default:
		_ = r.Error(reply)
	}
	p.send(o)
	return nil
}

func (h gatewayHandler) Leave(ch *phoenix.Channel, reason error) {
	p := h.p
	id := ch.Identity().(*identity)
	var o outbox
	p.mu.Lock()
	if g := p.gateways[id.deviceID]; g != nil && g.ch == ch {
		delete(p.gateways, id.deviceID)
		p.failPendingFor(id.deviceID, &o)
	}
	p.mu.Unlock()
	p.log.Info("gateway left", zap.String("gateway_id", id.deviceID), zap.NamedError("reason", reason))
	p.send(o)
}
