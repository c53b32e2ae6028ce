package snownet

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v3"
	"github.com/pion/transport/v3"
	"github.com/pion/transport/v3/stdnet"
	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

// Node errors.
var (
	ErrClosed            = errors.New("snownet: node closed")
	ErrUnknownConnection = errors.New("snownet: unknown connection")
	ErrBadParams         = errors.New("snownet: bad connection parameters")
	ErrDuplicateKey      = errors.New("snownet: public key already used by another connection")
	errBindNotOpen       = errors.New("snownet: shared socket is not open")
)

// Config configures a Node. Nil and zero fields take defaults.
type Config struct {
	// PrivateKey is the WireGuard static key; zero generates one.
	PrivateKey Key
	// Tun is the device WireGuard reads from and writes to (required).
	// connlib passes its pipeline device; tests pass an in-memory one.
	Tun tun.Device
	// Logger; nil means no logging. Keys and credentials are never logged.
	Logger *zap.Logger
	// ListenPort of the shared sockets (0: an ephemeral port).
	ListenPort uint16
	// Bind configures the shared sockets (inner Bind, buffer sizes).
	Bind BindConfig
	// Net is what ICE uses to list interfaces and to open the sockets of
	// its TURN allocations; nil means the host network. Tests pass a pion
	// vnet.
	Net transport.Net
	// HostIP, if valid, is the only address host candidates are gathered
	// for (it must be an address of the shared socket). Otherwise every
	// interface address is used.
	HostIP netip.Addr
	// DisableHostCandidates and DisableSrflxCandidates leave those
	// candidate types out (relay-only tests, privacy).
	DisableHostCandidates  bool
	DisableSrflxCandidates bool
	// ICE tunes the agents' timers.
	ICE ICETimers
	// Clock drives the lifecycle timers; nil means the system clock.
	Clock Clock
	// TickInterval is how often the lifecycle timers are evaluated
	// (default 100 ms); while a nominated connection waits for its
	// WireGuard handshake, WireGuard is polled more often (from every 2 ms,
	// backing off; see handshakePollDelay).
	TickInterval time.Duration
	// PionTURN goes back to pion's own TURN client, one allocation and
	// one socket per agent, with relayed WireGuard moved through the
	// agent's conn one packet per syscall. By default TURN runs on the
	// shared socket instead: one allocation per relay with a channel per
	// peer that every agent's relay candidate uses (turnproxy.go), and
	// ChannelData framed in the Bind's batches (turndata.go).
	PionTURN bool
}

// Node is a set of WireGuard-over-ICE connections sharing one UDP socket
// per address family.
//
// Concurrency: every method is safe for concurrent use and none blocks on
// the network for long. Events are delivered in order on the Events
// channel; the consumer may call any Node method while handling one, and
// must keep draining the channel (events are queued without bound until it
// does). After Close every method returns ErrClosed (Stats returns nil) and
// the Events channel is closed.
type Node struct {
	cfg   Config
	log   *zap.Logger
	clock Clock
	net   transport.Net

	bind *Bind
	dev  *device.Device

	events  *eventQueue
	stop    chan struct{}
	tickNow chan struct{} // wakes tickLoop (capacity 1)
	wg      sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	key        Key
	conns      map[string]*connection
	relays     map[string]Relay                          // by Relay.key()
	realms     atomic.Pointer[map[netip.AddrPort]string] // relay address -> realm, copy on write
	realmDrops atomic.Uint64
	muxes      []*muxSlot     // pion muxes on the shared socket; [0] is primary
	closing    sync.WaitGroup // agents still closing (Close waits for them)
	mux        *ice.UniversalUDPMuxDefault
	lastPoll   time.Time
	proxies    map[netip.AddrPort]*turnProxy // SharedTURN: by relay address
	relayLost  map[string]time.Time          // peer -> when its relayed connection lost its allocation (relayloss.go)
}

// NewNode creates the WireGuard device over a shared Bind, brings it up
// and starts the ICE mux on the bound port.
func NewNode(cfg Config) (*Node, error) {
	if cfg.Tun == nil {
		return nil, errors.New("snownet: Config.Tun is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Clock == nil {
		cfg.Clock = systemClock{}
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = 100 * time.Millisecond
	}
	if cfg.PrivateKey.IsZero() {
		k, err := GeneratePrivateKey()
		if err != nil {
			return nil, err
		}
		cfg.PrivateKey = k
	}
	netw := cfg.Net
	if netw == nil {
		sn, err := stdnet.NewNet()
		if err != nil {
			return nil, err
		}
		netw = sn
	}
	bc := cfg.Bind
	if mtu, err := cfg.Tun.MTU(); err == nil && mtu+64 > bc.MaxPacketSize {
		bc.MaxPacketSize = mtu + 64
	}
	if bc.Logger == nil {
		bc.Logger = cfg.Logger.Named("bind")
	}
	b := NewBind(bc)
	n := &Node{
		cfg:   cfg,
		log:   cfg.Logger,
		clock: cfg.Clock,

		bind:    b,
		events:  newEventQueue(),
		stop:    make(chan struct{}),
		tickNow: make(chan struct{}, 1),
		key:     cfg.PrivateKey,
		conns:   make(map[string]*connection),
		relays:  make(map[string]Relay),
	}
	n.net = relayNet{Net: netw, rcv: b.rcvbuf, snd: b.sndbuf, realm: n.relayRealm, realmDrops: &n.realmDrops}
	if n.sharedTURN() {
		n.net = sharedTURNNet{Net: n.net, proxy: b.turnProxyAt, port: b.Port}
	}
	empty := map[netip.AddrPort]string{}
	n.realms.Store(&empty)
	wlog := cfg.Logger.Named("wireguard")
	n.dev = device.NewDevice(cfg.Tun, b, &device.Logger{Verbosef: wgLogf(wlog, ""), Errorf: wgLogf(wlog, "error: ")})
	// Peers are pinned to their keyed endpoint: wireguard-go must never
	// roam a peer to the raw source address of a packet, ICE decides.
	n.dev.DisableSomeRoamingForBrokenMobileSemantics()
	if err := n.dev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=%d\n", n.key.hex(), cfg.ListenPort)); err != nil {
		n.dev.Close()
		n.events.close()
		return nil, err
	}
	if err := n.dev.Up(); err != nil {
		n.dev.Close()
		n.events.close()
		return nil, err
	}
	if err := n.rebuildMux(); err != nil {
		n.dev.Close()
		n.events.close()
		return nil, err
	}
	n.wg.Add(1)
	go n.tickLoop()
	return n, nil
}

// rebuildMux (re)creates the primary ICE mux on the Bind's current port
// and drops the others. pion reads the mux address once, so a new port
// needs new muxes.
func (n *Node) rebuildMux() error {
	s, err := n.newMuxSlot()
	if err != nil {
		return err
	}
	old := n.muxes
	n.muxes = []*muxSlot{s}
	n.updateRoutesLocked()
	for _, m := range old {
		m.close()
	}
	return nil
}

// relayRealm is the realm configured for a relay address ("" if none).
func (n *Node) relayRealm(ap netip.AddrPort) string { return (*n.realms.Load())[ap] }

// Events returns the channel events are delivered on (see Node).
func (n *Node) Events() <-chan Event { return n.events.out }

// PublicKey is the node's current WireGuard public key.
func (n *Node) PublicKey() Key {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.key.PublicKey()
}

// Port is the port of the shared sockets.
func (n *Node) Port() uint16 { return n.bind.Port() }

// BindStats returns the shared sockets' classifier counters.
func (n *Node) BindStats() BindStats {
	s := n.bind.Stats()
	s.RealmRefused = n.realmDrops.Load()
	return s
}

// HasRelays reports whether the node knows at least one relay.
func (n *Node) HasRelays() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.relays) > 0
}

// UpsertConnection creates the connection to p.Peer, or reuses it when it
// exists with identical keys, credentials and role (only the allowed IPs
// are updated, local candidates are signalled again and a controlling node
// starts a new handshake). Any other difference replaces it (no event for
// the old one). Local candidates follow as EventNewCandidate; without
// relays an EventNoRelays is emitted too (the connection is still made).
func (n *Node) UpsertConnection(p ConnParams) error {
	if err := p.validate(); err != nil {
		return err
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return ErrClosed
	}
	now := n.clock.Now()
	if old := n.conns[p.Peer]; old != nil {
		// A connection whose ICE is disconnected is replaced even with
		// identical parameters: the peer re-asks after its side failed,
		// with a new agent, while ours holds a dead selected pair, pairs
		// pion gave up on, and a disconnect timer that would tear the
		// connection down again just as the peer's new agent reaches it.
		if old.params.sameSession(p) && !old.lc.pathDown() {
			err := n.reuseLocked(old, p, now)
			n.mu.Unlock()
			return err
		}
		n.removeLocked(old)
	}
	for _, c := range n.conns {
		if c.params.PublicKey == p.PublicKey {
			n.mu.Unlock()
			return ErrDuplicateKey
		}
	}
	c, err := n.newConnectionLocked(p, now)
	if err != nil {
		n.mu.Unlock()
		return err
	}
	if len(n.relays) == 0 {
		n.events.push(Event{Kind: EventNoRelays, Peer: p.Peer})
	}
	n.mu.Unlock()
	if err := c.ice.start(); err != nil {
		n.failConnection(c, "gathering: "+err.Error())
		return err
	}
	return nil
}

func (n *Node) reuseLocked(c *connection, p ConnParams, now time.Time) error {
	c.params.AllowedIPs = p.AllowedIPs
	if err := n.dev.IpcSet(peerConfig(p, false)); err != nil {
		return err
	}
	c.lc.touch(now)
	c.reusedAt = now
	for _, s := range c.localCands {
		n.events.push(Event{Kind: EventNewCandidate, Peer: c.id, Candidate: s})
	}
	if p.Role == RoleControlling && c.pair != nil {
		if peer := n.dev.LookupPeer(device.NoisePublicKey(p.PublicKey)); peer != nil {
			go peer.SendHandshakeInitiation(false)
		}
	}
	return nil
}

// peerConfig is the UAPI text adding (or updating) the WireGuard peer.
// The endpoint is the peer id, which Bind.ParseEndpoint turns into the
// keyed endpoint; setting it in the same operation that creates the peer
// pins it (roaming disabled). No persistent keepalive: ICE keeps the NAT
// bindings open.
func peerConfig(p ConnParams, withEndpoint bool) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "public_key=%s\n", p.PublicKey.hex())
	if withEndpoint {
		fmt.Fprintf(&sb, "preshared_key=%s\n", p.PresharedKey.hex())
		fmt.Fprintf(&sb, "endpoint=%s\n", p.Peer)
	}
	sb.WriteString("replace_allowed_ips=true\n")
	for _, a := range p.AllowedIPs {
		fmt.Fprintf(&sb, "allowed_ip=%s\n", a.Masked())
	}
	return sb.String()
}

func (n *Node) relayListLocked() []Relay {
	out := make([]Relay, 0, len(n.relays))
	for _, r := range n.relays {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key() < out[j].key() })
	return out
}

// AddRemoteCandidate adds one SDP candidate of the peer. Non-UDP and
// unparseable candidates return an error and are skipped; callers with a
// list should call once per candidate (see ParseCandidates).
func (n *Node) AddRemoteCandidate(peer, sdp string) error {
	cand, err := parseCandidate(sdp)
	if err != nil {
		return err
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return ErrClosed
	}
	c := n.conns[peer]
	if c == nil {
		n.mu.Unlock()
		return ErrUnknownConnection
	}
	now := n.clock.Now()
	c.lc.remoteCandidate()
	c.lc.touch(now)
	if len(c.remoteCands) < maxReplayCandidates {
		c.remoteCands = append(c.remoteCands, sdp)
	}
	s := c.ice
	n.mu.Unlock()
	return s.addRemote(cand)
}

// RemoveRemoteCandidate records that the peer withdrew a candidate.
// pion/ice v3 cannot remove a remote candidate from a running agent, so
// this only validates it; if the withdrawn candidate carried the nominated
// pair, ICE consent (keepalive) failure moves the connection on.
func (n *Node) RemoveRemoteCandidate(peer, sdp string) error {
	if _, err := parseCandidate(sdp); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	c := n.conns[peer]
	if c == nil {
		return ErrUnknownConnection
	}
	c.lc.touch(n.clock.Now())
	return nil
}

// RemoveConnection forgets the connection to peer without an event.
func (n *Node) RemoveConnection(peer string) error {
	n.mu.Lock()
	c := n.conns[peer]
	if c == nil {
		n.mu.Unlock()
		return ErrUnknownConnection
	}
	n.removeLocked(c)
	n.mu.Unlock()
	return nil
}

// CloseConnection removes the connection to peer and emits
// EventConnectionClosed.
func (n *Node) CloseConnection(peer string) error {
	n.mu.Lock()
	c := n.conns[peer]
	if c == nil {
		n.mu.Unlock()
		return ErrUnknownConnection
	}
	n.removeLocked(c)
	n.events.push(Event{Kind: EventConnectionClosed, Peer: peer})
	n.mu.Unlock()
	return nil
}

// removeLocked detaches c from the node, the Bind and WireGuard and starts
// closing its agent in the background.
func (n *Node) removeLocked(c *connection) {
	if c.closed {
		return
	}
	c.closed = true
	if n.conns[c.id] == c {
		delete(n.conns, c.id)
	}
	n.bind.RemovePeer(c.id)
	n.dev.RemovePeer(device.NoisePublicKey(c.params.PublicKey))
	// pion's Close waits for candidate gathering (seconds if a relay does
	// not answer), so the agent is closed in the background; its ufrag
	// stays reserved on its mux until then (see muxpool.go).
	slot, ufrag := c.slot, c.params.Local.Ufrag
	n.closing.Add(1)
	go func() {
		defer n.closing.Done()
		c.shutdown()
		n.mu.Lock()
		n.releaseMuxLocked(slot, ufrag)
		n.mu.Unlock()
	}()
}

func (n *Node) failConnection(c *connection, reason string) {
	n.mu.Lock()
	if c.closed {
		n.mu.Unlock()
		return
	}
	n.removeLocked(c)
	n.events.push(Event{Kind: EventConnectionFailed, Peer: c.id, Reason: reason})
	n.mu.Unlock()
}

// UpdateRelays adds and removes relays. New connections use all known
// relays; existing connections keep the agents they have (pion/ice v3
// cannot add TURN servers to a running agent), but their local relay
// candidates on a removed relay are invalidated (EventInvalidateCandidate).
// When the last relay goes, EventNoRelays is emitted.
func (n *Node) UpdateRelays(added []Relay, removed []string) error {
	for _, r := range added {
		if !r.valid() {
			return ErrBadRelay
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	had := len(n.relays) > 0
	gone := make(map[netip.Addr]bool)
	for _, id := range removed {
		for k, r := range n.relays {
			if r.ID == id {
				gone[r.Addr.Addr().Unmap()] = true
				delete(n.relays, k)
			}
		}
	}
	for _, r := range added {
		r.Addr = netip.AddrPortFrom(r.Addr.Addr().Unmap(), r.Addr.Port())
		n.relays[r.key()] = r
		delete(gone, r.Addr.Addr())
	}
	realms := make(map[netip.AddrPort]string, len(n.relays))
	for _, r := range n.relays {
		realms[r.Addr] = r.Realm
	}
	n.realms.Store(&realms)
	n.syncProxiesLocked(false)
	if len(gone) > 0 {
		for _, c := range n.conns {
			c.invalidateRelayCandidatesLocked(gone)
		}
	}
	if had && len(n.relays) == 0 {
		n.events.push(Event{Kind: EventNoRelays})
	}
	return nil
}

// State returns the lifecycle state and path of the connection to peer
// without polling WireGuard (cheap enough for the packet pipeline); ok is
// false when there is no such connection.
func (n *Node) State(peer string) (state ConnState, path PathKind, ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := n.conns[peer]
	if c == nil {
		return StateFailed, PathNone, false
	}
	return c.lc.state(), c.pathKind(), true
}

// Stats returns a snapshot of every connection, sorted by peer id.
func (n *Node) Stats() []ConnStats {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.mu.Unlock()
	counters := n.peerCounters()
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]ConnStats, 0, len(n.conns))
	for _, c := range n.conns {
		st := ConnStats{Peer: c.id, State: c.lc.state(), Path: c.pathKind()}
		if c.pair != nil {
			p := *c.pair
			st.Pair = &p
		}
		if pc, ok := counters[c.params.PublicKey.hex()]; ok {
			st.RxBytes, st.TxBytes, st.LastHandshake = pc.rx, pc.tx, pc.lastHandshake
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}

func (n *Node) peerCounters() map[string]peerCounters {
	s, err := n.dev.IpcGet()
	if err != nil {
		return nil
	}
	return parseIpcGet(s)
}

// Reset handles a network change the Firezone way: every connection is
// closed (EventConnectionClosed each), a new WireGuard key is generated,
// the shared sockets are rebound on a new ephemeral port and the ICE mux
// rebuilt. The caller must reconnect to the portal with the returned new
// public key; connections are then re-created as usual.
func (n *Node) Reset() (Key, error) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return Key{}, ErrClosed
	}
	var closing []*connection
	for _, c := range n.conns {
		closing = append(closing, c)
	}
	sort.Slice(closing, func(i, j int) bool { return closing[i].id < closing[j].id })
	for _, c := range closing {
		n.removeLocked(c)
		n.events.push(Event{Kind: EventConnectionClosed, Peer: c.id, Reason: "reset"})
	}
	k, err := GeneratePrivateKey()
	if err == nil {
		n.key = k
		err = n.dev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=0\n", k.hex()))
	}
	if err == nil {
		err = n.rebuildMux()
	}
	// The allocations belong to the old port's 5-tuple.
	n.syncProxiesLocked(true)
	// A reset follows a network change: direct paths may work now.
	n.relayLost = nil
	pub := n.key.PublicKey()
	n.mu.Unlock()
	return pub, err
}

// Close closes every connection (without events), the WireGuard device,
// the sockets and the Events channel.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	var closing []*connection
	for _, c := range n.conns {
		closing = append(closing, c)
		n.removeLocked(c)
	}
	muxes := n.muxes
	n.muxes = nil
	proxies := n.takeProxiesLocked()
	n.mu.Unlock()
	close(n.stop)
	n.wg.Wait()
	n.closing.Wait()
	for _, p := range proxies {
		p.close()
	}
	for _, m := range muxes {
		m.close()
	}
	n.dev.Close()
	n.events.close()
	return nil
}
