package devportal

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib/portal"
)

// authzKey identifies an authorization: one client, one resource.
type authzKey struct{ clientID, resourceID string }

// authorization is an access the gateway confirmed (authorization_created).
// It is listed in the gateway's init and expires at expiresAt.
type authorization struct {
	gatewayID string
	siteID    string
	actorID   string
	expiresAt *int64
	timer     Stopper // expiry; nil without expiry
}

// pendingAuthz is a create_authorization waiting for the gateway's answer.
type pendingAuthz struct {
	clientID, gatewayID, resourceID string
	siteID, actorID                 string
	expiresAt                       *int64
	answer                          portal.AuthorizationCreated // for the client
	timer                           Stopper                     // the 15 s offline timeout
}

func failed(resourceID, reason string) portal.AuthorizationCreationFailed {
	return portal.AuthorizationCreationFailed{ResourceID: resourceID, Reason: reason}
}

// loadExcept counts, per gateway, the distinct connected clients other
// than clientID that hold or await an authorization there. Clients that
// went away do not count: their authorizations linger until expiry but
// carry no traffic.
func (p *Portal) loadExcept(clientID string) map[string]int {
	seen := map[[2]string]bool{}
	load := map[string]int{}
	count := func(cid, gid string) {
		if cid == clientID || p.clients[cid] == nil || seen[[2]string{cid, gid}] {
			return
		}
		seen[[2]string{cid, gid}] = true
		load[gid]++
	}
	for k, a := range p.authz {
		count(k.clientID, a.gatewayID)
	}
	for _, pa := range p.pending {
		count(pa.clientID, pa.gatewayID)
	}
	return load
}

// maxPendingPerClient bounds the create_authorization requests one client
// may have in flight; beyond it requests are dropped (the client asks again
// on its next packet), so a misbehaving client cannot grow the portal's
// state or flood gateways.
const maxPendingPerClient = 32

// requestAuthorization runs the policy check and gateway choice for a
// client's request_authorization and queues create_authorization, or the
// failure for the client. Called with p.mu held.
func (p *Portal) requestAuthorization(c *clientConn, req *portal.RequestAuthorization, o *outbox) {
	log := p.log.With(zap.String("client_id", c.id), zap.String("resource_id", req.ResourceID))
	inFlight := 0
	for _, pa := range p.pending {
		if pa.clientID == c.id {
			inFlight++
		}
	}
	if inFlight >= maxPendingPerClient {
		log.Warn("authorization request dropped: too many in flight", zap.Int("in_flight", inFlight))
		return
	}
	r := p.model.resources[req.ResourceID]
	if r == nil {
		log.Info("authorization refused", zap.String("reason", portal.ReasonNotFound))
		o.add(c.ch, portal.EventAuthorizationCreationFailed, failed(req.ResourceID, portal.ReasonNotFound))
		return
	}
	a := p.model.actors[c.actorID]
	if a == nil || !p.model.allows(a, r.ID) {
		log.Info("authorization refused", zap.String("reason", portal.ReasonForbidden))
		o.add(c.ch, portal.EventAuthorizationCreationFailed, failed(r.ID, portal.ReasonForbidden))
		return
	}
	var cands []*gatewayConn
	for _, g := range p.gateways {
		if r.servedBy(g.siteID) {
			cands = append(cands, g)
		}
	}
	g := pickGateway(cands, req.ConnectedGatewayIDs, p.loadExcept(c.id), p.opts.Intn)
	if g == nil {
		log.Info("authorization refused", zap.String("reason", portal.ReasonOffline))
		o.add(c.ch, portal.EventAuthorizationCreationFailed, failed(r.ID, portal.ReasonOffline))
		return
	}
	clientICE, gatewayICE := ICECredentials(c.id, c.publicKey, g.id, g.publicKey)
	psk := GatewayPSK(c.pskBase, g.pskBase, c.id, g.id, c.publicKey, g.publicKey)
	var expiresAt *int64
	if d := p.model.cfg.AuthorizationLifetime; d > 0 {
		e := p.clock.Now().Add(d).Unix()
		expiresAt = &e
	}
	var nonce [12]byte
	_, _ = rand.Read(nonce[:])
	ref := signRef(p.secret, refClaims{ID: hex.EncodeToString(nonce[:]), ClientID: c.id, GatewayID: g.id, ResourceID: r.ID})
	// use_iceless needs both peers capable and an account feature flag;
	// gozone implements ICE only, so this portal never sets it.
	const iceless = false
	pa := &pendingAuthz{
		clientID: c.id, gatewayID: g.id, resourceID: r.ID, expiresAt: expiresAt,
		siteID: g.siteID, actorID: c.actorID,
		answer: portal.AuthorizationCreated{
			ResourceID: r.ID, GatewayID: g.id, SiteID: g.siteID, GatewayPublicKey: g.publicKey,
			GatewayIPv4: portal.IP{Addr: g.ipv4}, GatewayIPv6: portal.IP{Addr: g.ipv6}, PresharedKey: psk,
			ClientICECredentials: clientICE, GatewayICECredentials: gatewayICE, UseIceless: iceless,
			FlowLogsIngestToken: flowLogsToken,
		},
	}
	pa.timer = p.clock.AfterFunc(p.opts.AuthorizationTimeout, func() { p.authorizationTimeout(ref) })
	p.pending[ref] = pa
	os, osVer := c.osInfo()
	o.add(g.ch, portal.EventCreateAuthorization, portal.CreateAuthorization{
		Ref:      ref,
		Resource: r.gatewayResource(),
		Client: portal.AuthorizingClient{
			ID: c.id, PublicKey: c.publicKey, PresharedKey: psk,
			IPv4: portal.IP{Addr: c.ipv4}, IPv6: portal.IP{Addr: c.ipv6}, Version: c.version,
			DeviceOSName: os, DeviceOSVersion: osVer,
		},
		ClientICECredentials: clientICE, GatewayICECredentials: gatewayICE,
		ExpiresAt: expiresAt,
		Subject: &portal.Subject{ActorID: a.ID, ActorName: a.Name, ActorEmail: a.Email, ActorType: "account_user",
			IP: c.remoteIP, UserAgent: c.userAgent},
		UseIceless:          iceless,
		FlowLogsIngestToken: flowLogsToken,
	})
	log.Info("authorization requested", zap.String("gateway_id", g.id), zap.String("site_id", g.siteID))
}

// flowLogsToken is a syntactically valid HS256 JWT ({"alg":"HS256"},
// {"sub":"gozone"}) with a dummy signature: connlib requires the field but
// gozone uploads no flow logs.
const flowLogsToken = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJnb3pvbmUifQ.Z296b25lLWRldnBvcnRhbA"

// authorizationCreated handles the gateway's answer. It returns the error
// reason for the reply ("" for ok). Called with p.mu held.
func (p *Portal) authorizationCreated(g *gatewayConn, ref string, o *outbox) string {
	claims, err := verifyRef(p.secret, ref)
	if err != nil || claims.GatewayID != g.id {
		return ErrInvalidRef.Error()
	}
	pa := p.pending[ref]
	if pa == nil {
		// Timed out, or the client left: nothing to deliver.
		return ErrInvalidRef.Error()
	}
	delete(p.pending, ref)
	pa.timer.Stop()
	key := authzKey{pa.clientID, pa.resourceID}
	if old := p.authz[key]; old != nil && old.timer != nil {
		old.timer.Stop()
	}
	a := &authorization{gatewayID: g.id, siteID: pa.siteID, actorID: pa.actorID, expiresAt: pa.expiresAt}
	if pa.expiresAt != nil {
		exp := *pa.expiresAt
		d := time.Unix(exp, 0).Sub(p.clock.Now())
		a.timer = p.clock.AfterFunc(max(d, 0), func() { p.expire(key, exp) })
	}
	p.authz[key] = a
	if c := p.clients[pa.clientID]; c != nil {
		o.add(c.ch, portal.EventAuthorizationCreated, pa.answer)
	}
	p.log.Info("authorization created", zap.String("client_id", pa.clientID), zap.String("gateway_id", g.id),
		zap.String("resource_id", pa.resourceID))
	return ""
}

// authorizationTimeout fires when a gateway did not answer in time.
func (p *Portal) authorizationTimeout(ref string) {
	var o outbox
	p.mu.Lock()
	if pa := p.pending[ref]; pa != nil {
		delete(p.pending, ref)
		p.log.Info("authorization timed out", zap.String("client_id", pa.clientID), zap.String("gateway_id", pa.gatewayID))
		if c := p.clients[pa.clientID]; c != nil {
			o.add(c.ch, portal.EventAuthorizationCreationFailed, failed(pa.resourceID, portal.ReasonOffline))
		}
	}
	p.mu.Unlock()
	p.send(o)
}

// expire removes an authorization at its expiry and tells the gateway,
// unless it was renewed meanwhile.
func (p *Portal) expire(key authzKey, exp int64) {
	var o outbox
	p.mu.Lock()
	if a := p.authz[key]; a != nil && a.expiresAt != nil && *a.expiresAt == exp {
		delete(p.authz, key)
		p.log.Info("authorization expired", zap.String("client_id", key.clientID), zap.String("resource_id", key.resourceID))
		if g := p.gateways[a.gatewayID]; g != nil {
			o.add(g.ch, portal.EventRejectAccess, portal.RejectAccess{ClientID: key.clientID, ResourceID: key.resourceID})
		}
	}
	p.mu.Unlock()
	p.send(o)
}

// revoke removes an authorization (policy or resource gone) and queues
// reject_access for its gateway. Called with p.mu held.
func (p *Portal) revoke(key authzKey, o *outbox) {
	a := p.authz[key]
	if a == nil {
		return
	}
	if a.timer != nil {
		a.timer.Stop()
	}
	delete(p.authz, key)
	if g := p.gateways[a.gatewayID]; g != nil {
		o.add(g.ch, portal.EventRejectAccess, portal.RejectAccess{ClientID: key.clientID, ResourceID: key.resourceID})
	}
}

// failPendingFor answers every pending authorization that involves
// gateway gid (it went offline) with offline. Called with p.mu held.
func (p *Portal) failPendingFor(gid string, o *outbox) {
	for ref, pa := range p.pending {
		if pa.gatewayID != gid {
			continue
		}
		pa.timer.Stop()
		delete(p.pending, ref)
		if c := p.clients[pa.clientID]; c != nil {
			o.add(c.ch, portal.EventAuthorizationCreationFailed, failed(pa.resourceID, portal.ReasonOffline))
		}
	}
}

// paired reports whether client and gateway have (or are setting up) a
// connection, i.e. whether candidates may flow between them. Called with
// p.mu held.
func (p *Portal) paired(clientID, gatewayID string) bool {
	for k, a := range p.authz {
		if k.clientID == clientID && a.gatewayID == gatewayID {
			return true
		}
	}
	for _, pa := range p.pending {
		if pa.clientID == clientID && pa.gatewayID == gatewayID {
			return true
		}
	}
	return false
}

// gatewayAuthorizations lists a gateway's live authorizations for init.
func (p *Portal) gatewayAuthorizations(gid string) []portal.Authorization {
	out := []portal.Authorization{}
	for k, a := range p.authz {
		if a.gatewayID == gid {
			out = append(out, portal.Authorization{ClientID: k.clientID, ResourceID: k.resourceID, ExpiresAt: a.expiresAt})
		}
	}
	return out
}
