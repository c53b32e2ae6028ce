package connlib

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib/dns"
	"github.com/gozone/gozone/connlib/dns/p2pcontrol"
	"github.com/gozone/gozone/connlib/portal"
	"github.com/gozone/gozone/connlib/routing"
	"github.com/gozone/gozone/connlib/snownet"
	"github.com/gozone/gozone/phoenix"
)

// clientState is the session state owned by the goroutine running
// Client.Run. Nothing in it is touched from any other goroutine; the packet
// path sees it through the clientView the loop publishes.
type clientState struct {
	c   *Client
	log *zap.Logger
	ctx context.Context

	session  *portal.Session
	pc       *phoenix.Client
	pcEvents <-chan phoenix.Event
	pcCancel context.CancelFunc
	pcGen    int
	pcDone   chan clientPortalDone
	joined   bool
	// lastJoined is when the portal was last joined (zero: never).
	lastJoined time.Time

	ipv4, ipv6   netip.Addr
	searchDomain string
	sentinels    *dns.SentinelMap
	upstreams    []dns.Upstream
	installed    []netip.Prefix // routes the OS layer has
	ifaceSet     bool

	resources  map[string]portal.ClientResource
	ridToID    map[routing.ResourceID]string
	relays     map[string]bool // relay ids the node knows
	gateways   map[string]*clientGateway
	resGateway map[string]string // resource id → gateway id
	ready      map[routing.ResourceID]bool
	active     map[clientTarget]bool
	heldCands  map[string][]string // gateway id → candidates that came before the connection
	failures   map[string]string   // resource id → last authorization_creation_failed reason
	// reconnectWanted: resources to ask for on the next join
	// (client_reconnect.go).
	reconnectWanted map[routing.ResourceID]bool

	// Bypass of the internet resource (client_bypass.go).
	relayIPs   []netip.Addr
	relayAddrs map[string][]netip.Addr
	candIPs    map[netip.Addr]bool
	bypass     []netip.Addr

	retrier *p2pcontrol.Retrier[clientAssignKey]
	dns     *clientDNS
	dnsTCP  *clientDNSTCP
}

type clientPortalDone struct {
	gen int
	err error
}

// clientGateway is one gateway the session has a connection (attempt) to.
type clientGateway struct {
	id, siteID string
	ipv4, ipv6 netip.Addr
	params     snownet.ConnParams
	resources  map[string]bool
	connected  bool
	path       snownet.PathKind
}

func newClientState(c *Client) *clientState {
	s := &clientState{
		c:          c,
		log:        c.log,
		session:    portal.NewSession(c.log.Named("portal")),
		pcDone:     make(chan clientPortalDone, 4),
		resources:  make(map[string]portal.ClientResource),
		ridToID:    make(map[routing.ResourceID]string),
		relays:     make(map[string]bool),
		gateways:   make(map[string]*clientGateway),
		resGateway: make(map[string]string),
		ready:      make(map[routing.ResourceID]bool),
		active:     make(map[clientTarget]bool),
		heldCands:  make(map[string][]string),
		failures:   make(map[string]string),
		retrier:    p2pcontrol.NewRetrier[clientAssignKey](p2pcontrol.RetryConfig{Clock: c.clock}),
	}
	s.dns = newClientDNS(s)
	s.dnsTCP = newClientDNSTCP(s)
	return s
}

func (s *clientState) close() {
	s.stopPortal()
	s.dns.close()
	s.dnsTCP.close()
}

func (s *clientState) run(ctx context.Context) error {
	s.ctx = ctx
	if err := s.startPortal(); err != nil {
		return err
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	nodeEvents := s.c.node.Events()
	for {
		select {
		case <-ctx.Done():
			s.goodbye()
			return nil
		case ev, ok := <-s.pcEvents:
			if !ok {
				s.pcEvents = nil
				continue
			}
			s.onPortalEvent(ev)
		case r := <-s.pcDone:
			if r.gen != s.pcGen {
				continue // a portal connection replaced by a reset
			}
			if ctx.Err() != nil {
				return nil
			}
			if r.err == nil {
				r.err = errors.New("portal connection ended")
			}
			if s.keepTrying(r.err) {
				continue
			}
			return clientPortalErr(r.err)
		case ev, ok := <-nodeEvents:
			if !ok {
				return errors.New("connlib: tunnel closed")
			}
			s.onNodeEvent(ev)
		case rid := <-s.c.intents:
			s.onIntent(rid)
		case p := <-s.c.dnsIn:
			s.dns.onPacket(p.buf)
			s.c.putPacket(p)
		case p := <-s.c.ctrlIn:
			s.onControl(p.buf)
			s.c.putPacket(p)
		case r := <-s.dns.results:
			s.dns.onUpstreamReply(r)
		case q := <-s.dnsTCP.queries:
			s.dns.query(dns.TransportTCP, q.msg, q.origin)
		case reason := <-s.c.resetReq:
			s.reset(reason)
		case <-tick.C:
			s.onTick()
		}
	}
}

// keepTrying decides whether a portal client that gave up reconnecting
// is replaced by a new one. A reset starts a fresh phoenix client, whose
// first-connection budget is only 15 s; a roaming device may well be
// offline longer than that, so once the session had joined, giving up is
// left to MaxPartitionTime (0: never), measured from the last join.
func (s *clientState) keepTrying(err error) bool {
	if !errors.Is(err, phoenix.ErrMaxRetriesReached) || s.lastJoined.IsZero() {
		return false
	}
	if mp := s.c.cfg.MaxPartitionTime; mp > 0 && time.Since(s.lastJoined) >= mp {
		return false
	}
	s.log.Warn("portal still unreachable; retrying", zap.Error(err))
	s.stopPortal()
	if err := s.startPortal(); err != nil {
		s.log.Error("reconnecting to the portal", zap.Error(err))
		return false
	}
	return true
}

// startPortal connects a new phoenix client (the node's current key goes
// into its URL).
func (s *clientState) startPortal() error {
	pc, err := s.c.newPortal()
	if err != nil {
		return err
	}
	s.pcGen++
	gen := s.pcGen
	ctx, cancel := context.WithCancel(s.ctx)
	s.pc, s.pcCancel, s.pcEvents = pc, cancel, pc.Events()
	done := s.pcDone
	go func() {
		err := pc.Run(ctx)
		done <- clientPortalDone{gen: gen, err: err}
	}()
	return nil
}

func (s *clientState) stopPortal() {
	if s.pcCancel != nil {
		s.pcCancel()
		s.pcCancel = nil
	}
	s.session.OnDisconnect()
	s.joined = false
	// Drain the old client's events so its goroutine can finish.
	if ch := s.pcEvents; ch != nil {
		go func() {
			for range ch {
			}
		}()
		s.pcEvents = nil
	}
}

// send pushes one message on the joined channel.
func (s *clientState) send(event string, payload any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	if s.pc == nil {
		return portal.ErrNotConnected
	}
	return s.pc.Push(event, b, nil)
}

func (s *clientState) onPortalEvent(ev phoenix.Event) {
	switch ev := ev.(type) {
	case *phoenix.Joined:
		s.joined = true
		s.lastJoined = time.Now()
		// The public key is not secret; logging it shows which key the
		// portal knows (it changes on every reset).
		s.log.Info("portal joined", zap.String("public_key", s.c.node.PublicKey().String()))
		if err := s.session.OnJoin(s.send); err != nil {
			s.log.Debug("sending after join", zap.Error(err))
		}
		s.onJoined()
	case *phoenix.StateChange:
		if ev.State != phoenix.StateJoined && s.joined {
			s.joined = false
			s.session.OnDisconnect()
			s.log.Warn("portal connection lost; reconnecting", zap.Error(ev.Err))
		}
	case *phoenix.PushFailed:
		s.log.Warn("portal refused a message", zap.String("event", ev.Event), zap.Error(ev.Err))
	case *phoenix.Message:
		s.onPortalMessage(ev.Event, ev.Payload)
	}
}

func (s *clientState) onPortalMessage(event string, payload []byte) {
	msg, err := portal.DecodeClientIngress(event, payload)
	if err != nil {
		if portal.Ignorable(err) {
			s.log.Debug("ignoring portal message", zap.String("event", event), zap.Error(err))
		} else {
			s.log.Warn("ignoring malformed portal message", zap.String("event", event), zap.Error(err))
		}
		return
	}
	switch m := msg.Payload.(type) {
	case *portal.ClientInit:
		s.onInit(m)
	case *portal.ConfigChanged:
		s.applyInterface(m.Interface)
		s.applyRoutes()
	case *portal.ClientResource:
		s.upsertResource(*m)
		s.afterResourceChange()
	case *portal.ResourceDeleted:
		s.removeResource(string(*m))
		s.afterResourceChange()
	case *portal.RelaysPresence:
		s.applyRelays(m.Connected, m.DisconnectedIDs)
	case *portal.AuthorizationCreated:
		s.onAuthorizationCreated(m)
	case *portal.AuthorizationCreationFailed:
		s.onAuthorizationFailed(m)
	case *portal.GatewayCandidates:
		if msg.Event == portal.EventInvalidateIceCandidates {
			s.onInvalidateCandidates(m)
		} else {
			s.onCandidates(m)
		}
	default:
		s.log.Debug("ignoring portal message", zap.String("event", event))
	}
}

func (s *clientState) onInit(m *portal.ClientInit) {
	s.applyInterface(m.Interface)
	seen := make(map[string]bool, len(m.Resources))
	for _, r := range m.Resources {
		seen[r.ID] = true
		s.upsertResource(r)
	}
	for id := range s.resources {
		if !seen[id] {
			s.removeResource(id)
		}
	}
	var gone []string
	have := make(map[string]bool)
	for _, r := range m.Relays {
		have[r.ID] = true
	}
	for id := range s.relays {
		if !have[id] {
			gone = append(gone, id)
		}
	}
	s.applyRelays(m.Relays, gone)
	s.afterResourceChange()
	s.log.Info("portal init applied", zap.Stringer("ipv4", s.ipv4), zap.Stringer("ipv6", s.ipv6),
		zap.Int("resources", len(s.resources)), zap.Int("relays", len(s.relays)))
	s.c.readyOnce.Do(func() { close(s.c.ready) })
}

// applyInterface takes the tunnel addresses and DNS settings.
func (s *clientState) applyInterface(iface portal.ClientInterface) {
	if !iface.IPv4.IsValid() && !iface.IPv6.IsValid() {
		s.log.Warn("ignoring interface configuration without addresses")
		return
	}
	s.ipv4, s.ipv6 = iface.IPv4.Addr, iface.IPv6.Addr
	search := ""
	if iface.SearchDomain != nil {
		search = *iface.SearchDomain
	}
	if err := s.c.resolver.SetSearchDomain(search); err != nil {
		s.log.Warn("ignoring invalid search domain", zap.Error(err))
		search = ""
	}
	s.searchDomain = search
	var do53 []netip.Addr
	for _, u := range iface.UpstreamDo53 {
		do53 = append(do53, u.IP.Addr)
	}
	if len(do53) == 0 {
		for _, u := range iface.UpstreamDNS {
			if ap, err := netip.ParseAddrPort(u.Address); err == nil {
				do53 = append(do53, ap.Addr())
			} else if a, err := netip.ParseAddr(u.Address); err == nil {
				do53 = append(do53, a)
			}
		}
	}
	var doh []string
	for _, u := range iface.UpstreamDoH {
		if url := portal.DoHProviderURL(u.Provider); url != "" {
			doh = append(doh, url)
		}
	}
	s.upstreams = dns.EffectiveUpstreams(do53, doh, s.c.cfg.SystemResolvers)
	sm, err := dns.NewSentinelMap(s.upstreams)
	if err != nil {
		s.log.Warn("too many upstream resolvers", zap.Error(err))
	}
	s.sentinels = sm
	if sm != nil {
		s.dnsTCP.ensure(sm.Sentinels())
	} else {
		s.dnsTCP.ensure(nil)
	}
	s.publish()
	if s.c.cfg.OS != nil {
		var servers []netip.Addr
		if sm != nil {
			servers = sm.Sentinels()
		}
		err := s.c.cfg.OS.SetInterface(s.ctx, ClientInterface{IPv4: s.ipv4, IPv6: s.ipv6, DNS: servers, SearchDomain: search})
		if err != nil {
			s.log.Error("configuring the tunnel interface", zap.Error(err))
		}
	}
	s.ifaceSet = true
}

// applyRoutes brings the OS routes in line with the routing table.
func (s *clientState) applyRoutes() {
	// Bypass routes first, so that the internet resource's default routes
	// never capture the session's own traffic.
	s.applyBypass()
	want := s.c.table.Routes()
	added, removed := routing.DiffRoutes(s.installed, want)
	if len(added) == 0 && len(removed) == 0 {
		return
	}
	if s.c.cfg.OS != nil {
		if err := s.c.cfg.OS.UpdateRoutes(s.ctx, added, removed); err != nil {
			s.log.Error("updating routes", zap.Error(err))
			return
		}
	}
	s.installed = want
}

// applyRelays hands relay changes to the node.
func (s *clientState) applyRelays(connected []portal.Relay, disconnected []string) {
	var add []snownet.Relay
	for _, r := range connected {
		ap, err := r.AddrPort()
		if err != nil || r.Username == "" || r.Password == "" {
			s.log.Warn("ignoring unusable relay", zap.String("relay", r.ID))
			continue
		}
		add = append(add, snownet.Relay{ID: r.ID, Addr: ap, Username: r.Username, Password: r.Password, Realm: "firezone"})
	}
	if err := s.c.node.UpdateRelays(add, disconnected); err != nil {
		s.log.Warn("updating relays", zap.Error(err))
		return
	}
	for _, id := range disconnected {
		delete(s.relays, id)
		delete(s.relayAddrs, id)
	}
	for _, r := range add {
		s.relays[r.ID] = true
		if s.relayAddrs == nil {
			s.relayAddrs = make(map[string][]netip.Addr)
		}
		if !slices.Contains(s.relayAddrs[r.ID], r.Addr.Addr()) {
			s.relayAddrs[r.ID] = append(s.relayAddrs[r.ID], r.Addr.Addr())
		}
	}
	s.relayIPs = s.relayIPs[:0]
	for _, as := range s.relayAddrs {
		s.relayIPs = append(s.relayIPs, as...)
	}
	s.applyBypass()
}

// publish builds and stores a new view for the packet path.
func (s *clientState) publish() {
	v := &clientView{
		ipv4: s.ipv4, ipv6: s.ipv6,
		ready:      make(map[routing.ResourceID]bool, len(s.ready)),
		active:     make(map[clientTarget]bool, len(s.active)),
		gatewayIPs: make(map[netip.Addr]bool, 2*len(s.gateways)),
		sentinels:  s.sentinels,
	}
	for k, ok := range s.ready {
		v.ready[k] = ok
	}
	for k, ok := range s.active {
		v.active[k] = ok
	}
	for _, g := range s.gateways {
		if g.ipv4.IsValid() {
			v.gatewayIPs[g.ipv4] = true
		}
		if g.ipv6.IsValid() {
			v.gatewayIPs[g.ipv6] = true
		}
	}
	s.c.view.Store(v)
	s.updateStatus()
}

func (s *clientState) onTick() {
	if n := s.c.pending.Expire(30 * time.Second); n > 0 {
		s.log.Debug("dropped packets that waited too long for a connection", zap.Int("packets", n))
	}
	for rid := range s.ready {
		s.flush(rid)
	}
	s.sendDueAssignments()
	s.dns.onTick()
	s.updateStatus()
}

// clientSortedKeys returns the keys of m in order (deterministic logs and
// messages).
func clientSortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
