package devportal

import (
	"errors"
	"reflect"
	"slices"

	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib/portal"
)

// ErrNoConfigPath is returned by Reload when the portal was started from
// an in-memory Config.
var ErrNoConfigPath = errors.New("devportal: no config path to reload")

// Reload re-reads Options.ConfigPath and applies it (the binary calls it on
// SIGHUP). An invalid file is rejected and the running configuration kept.
func (p *Portal) Reload() error {
	if p.opts.ConfigPath == "" {
		return ErrNoConfigPath
	}
	cfg, err := LoadConfig(p.opts.ConfigPath)
	if err != nil {
		p.log.Error("config reload rejected; keeping the running configuration", zap.Error(err))
		return err
	}
	return p.Apply(cfg)
}

// Apply switches to cfg and pushes the differences to connected devices:
//   - devices whose token is gone get disconnect{token_expired} and are
//     dropped;
//   - clients get resource_deleted for resources they lost (deletes first)
//     and resource_created_or_updated for new or changed ones; a changed
//     site or address is a delete plus a create;
//   - authorizations no policy allows any more, or whose resource is gone,
//     changed address or left the gateway's site, are removed and the
//     gateway gets reject_access;
//   - gateways holding a resource whose name or filters changed get
//     resource_updated;
//   - clients get config_changed when the DNS settings changed;
//   - every device gets relays_presence when the relay list changed.
//
// The built-in relay's settings and the portal secret are fixed at start;
// changes to them are logged and ignored until a restart.
func (p *Portal) Apply(cfg *Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	var o outbox
	p.mu.Lock()
	old := p.model
	if !reflect.DeepEqual(old.cfg.Relays.Builtin, cfg.Relays.Builtin) {
		p.log.Warn("relays.builtin changed; restart the portal to apply it")
	}
	if old.cfg.Secret != cfg.Secret {
		p.log.Warn("secret changed; restart the portal to apply it")
	}
	nm := compile(cfg)
	p.model = nm
	oldRelays := p.relays
	p.relays = p.relayEntries(cfg)

	p.dropRevokedDevices(nm, &o)
	p.revokeAuthorizations(old, nm, &o)
	for _, c := range p.clients {
		p.pushResourceDiff(old, nm, c, &o)
	}
	p.pushGatewayResourceUpdates(old, nm, &o)
	if !reflect.DeepEqual(old.cfg.DNS, cfg.DNS) {
		for _, c := range p.clients {
			o.add(c.ch, portal.EventConfigChanged, portal.ConfigChanged{Interface: nm.clientInterface(c.ipv4, c.ipv6)})
		}
	}
	if !slices.Equal(oldRelays, p.relays) {
		gone := []string{}
		for _, r := range oldRelays {
			if !slices.ContainsFunc(p.relays, func(n relayEntry) bool { return n == r }) {
				gone = append(gone, r.id)
			}
		}
		for _, g := range p.gateways {
			o.add(g.ch, portal.EventRelaysPresence, portal.RelaysPresence{DisconnectedIDs: gone, Connected: p.relaysFor(g.publicKey, gatewayRelayExpiry)})
		}
		for _, c := range p.clients {
			o.add(c.ch, portal.EventRelaysPresence, portal.RelaysPresence{DisconnectedIDs: gone, Connected: p.relaysFor(c.publicKey, clientRelayExpiry)})
		}
	}
	p.mu.Unlock()
	p.log.Info("configuration applied", zap.Int("pushes", len(o)), zap.Int("resources", len(cfg.Resources)),
		zap.Int("policies", len(cfg.Policies)), zap.Int("relays", len(p.relays)))
	p.send(o)
	// Disconnects go last so the disconnect push is written first.
	for _, m := range o {
		if m.event == portal.EventDisconnect {
			m.ch.Disconnect()
		}
	}
	return nil
}

// dropRevokedDevices removes devices whose token is gone or now belongs to
// another site or actor.
func (p *Portal) dropRevokedDevices(nm *model, o *outbox) {
	bye := portal.Disconnect{Reason: "token_expired"}
	for id, g := range p.gateways {
		if st := nm.gatewayTokens[g.token]; st == nil || st.ID != g.siteID {
			p.log.Info("gateway token revoked", zap.String("gateway_id", id))
			delete(p.gateways, id)
			p.failPendingFor(id, o)
			o.add(g.ch, portal.EventDisconnect, bye)
		}
	}
	for id, c := range p.clients {
		if a := nm.clientTokens[c.token]; a == nil || a.ID != c.actorID {
			p.log.Info("client token revoked", zap.String("client_id", id))
			p.dropClient(c, o)
			o.add(c.ch, portal.EventDisconnect, bye)
		}
	}
}

// revokeAuthorizations removes authorizations the new model no longer
// allows: resource gone or readdressed, no policy for the actor, or the
// gateway's site no longer serving the resource.
func (p *Portal) revokeAuthorizations(old, nm *model, o *outbox) {
	for key, a := range p.authz {
		r := nm.resources[key.resourceID]
		or := old.resources[key.resourceID]
		keep := r != nil && or != nil && r.Type == or.Type && r.Address == or.Address
		if keep {
			if a.actorID != "" {
				act := nm.actors[a.actorID]
				keep = act != nil && nm.allows(act, r.ID)
			}
			if keep {
				keep = r.servedBy(a.siteID)
			}
		}
		if !keep {
			p.revoke(key, o)
		}
	}
}

// pushResourceDiff sends one client the changes to its resource list.
func (p *Portal) pushResourceDiff(old, nm *model, c *clientConn, o *outbox) {
	render := func(m *model) map[string]portal.ClientResource {
		out := map[string]portal.ClientResource{}
		if a := m.actors[c.actorID]; a != nil {
			for _, r := range m.visible(a) {
				out[r.ID] = m.clientResource(r)
			}
		}
		return out
	}
	before, after := render(old), render(nm)
	var creates []portal.ClientResource
	// Deterministic order: the new model's name order.
	if a := nm.actors[c.actorID]; a != nil {
		for _, r := range nm.visible(a) {
			n := after[r.ID]
			b, had := before[r.ID]
			switch {
			case !had:
				creates = append(creates, n)
			case !reflect.DeepEqual(b.Sites, n.Sites) || b.Address != n.Address || b.Type != n.Type:
				o.add(c.ch, portal.EventResourceDeleted, portal.ResourceDeleted(r.ID))
				creates = append(creates, n)
			case !reflect.DeepEqual(b, n):
				creates = append(creates, n)
			}
		}
	}
	for id := range before {
		if _, ok := after[id]; !ok {
			o.add(c.ch, portal.EventResourceDeleted, portal.ResourceDeleted(id))
		}
	}
	for _, n := range creates {
		o.add(c.ch, portal.EventResourceCreatedOrUpdated, n)
	}
}

// pushGatewayResourceUpdates sends resource_updated to gateways that hold
// an authorization for a resource whose name or filters changed.
func (p *Portal) pushGatewayResourceUpdates(old, nm *model, o *outbox) {
	for id, r := range nm.resources {
		or := old.resources[id]
		if or == nil || or.Type != r.Type || or.Address != r.Address {
			continue
		}
		if reflect.DeepEqual(or.gatewayResource(), r.gatewayResource()) {
			continue
		}
		sent := map[string]bool{}
		for key, a := range p.authz {
			if key.resourceID != id || sent[a.gatewayID] {
				continue
			}
			if g := p.gateways[a.gatewayID]; g != nil {
				sent[a.gatewayID] = true
				o.add(g.ch, portal.EventResourceUpdated, r.gatewayResource())
			}
		}
	}
}
