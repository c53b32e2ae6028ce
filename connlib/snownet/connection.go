package snownet

import (
	"io"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/device"
)

// connection is the state of one peer: its ICE session, keyed endpoint and
// lifecycle. Fields are guarded by the node's lock; the iceListener methods
// run on pion goroutines and take it.
type connection struct {
	n      *Node
	id     string
	params ConnParams
	ep     *peerEndpoint
	ice    *iceSession
	slot   *muxSlot // the mux its agent uses
	lc     lifecycle

	pair          *PairInfo     // nominated pair, nil before
	rw            io.ReadWriter // the agent's conn once Dial/Accept returned
	readerRunning bool
	kicked        bool // controlling side has started the handshake

	localCands  []string
	relayCands  map[string]netip.Addr // local relay candidate SDP -> relay address
	remoteCands []string              // the peer's candidates (bounded; replayed by a restart, relayloss.go)
	reusedAt    time.Time             // last upsert with identical parameters (lifecycle clock)

	nominatedAt    time.Time // first nomination (wall clock: paces handshake polls)
	lastRx, lastTx uint64
	closed         bool
	stop           chan struct{}
	stopOnce       sync.Once
}

var _ iceListener = (*connection)(nil)

func (n *Node) newConnectionLocked(p ConnParams, now time.Time) (*connection, error) {
	c := &connection{
		n:          n,
		id:         p.Peer,
		params:     p,
		lc:         newLifecycle(now),
		relayCands: make(map[string]netip.Addr),
		stop:       make(chan struct{}),
	}
	slot, err := n.acquireMuxLocked(p.Local.Ufrag)
	if err != nil {
		return nil, err
	}
	c.slot = slot
	c.ep = n.bind.peer(p.Peer)
	if err := n.dev.IpcSet(peerConfig(p, true)); err != nil {
		n.bind.RemovePeer(p.Peer)
		n.releaseMuxLocked(slot, p.Local.Ufrag)
		return nil, err
	}
	s, err := newICESession(iceSessionConfig{
		mux:          slot.mux,
		net:          n.net,
		relays:       n.relayListLocked(),
		localUfrag:   p.Local.Ufrag,
		localPwd:     p.Local.Pwd,
		remoteUfrag:  p.Remote.Ufrag,
		remotePwd:    p.Remote.Pwd,
		controlling:  p.Role == RoleControlling,
		disableHost:  n.cfg.DisableHostCandidates,
		disableSrflx: n.cfg.DisableSrflxCandidates,
		timers:       n.cfg.ICE,
		relayWait:    n.relayAcceptanceLocked(p.Peer, now),
		log:          n.log.Named("ice").With(zap.String("peer", p.Peer)),
	}, c)
	if err != nil {
		n.bind.RemovePeer(p.Peer)
		n.dev.RemovePeer(device.NoisePublicKey(p.PublicKey))
		n.releaseMuxLocked(slot, p.Local.Ufrag)
		return nil, err
	}
	c.ice = s
	n.conns[p.Peer] = c
	n.updateRoutesLocked()
	return c, nil
}

// pathKind is the connection's path as users see it: relayed when the
// nominated pair has a relay candidate on either side (the traffic crosses
// a TURN server even if our side sends from the shared socket), direct
// otherwise, none before nomination or while the path is unusable.
func (c *connection) pathKind() PathKind {
	if c.pair == nil || c.ep.path.Load().kind == PathNone {
		return PathNone
	}
	if c.pair.LocalRelay || c.pair.RemoteRelay {
		return PathRelayed
	}
	return PathDirect
}

// shutdown stops the agent and the relay reader. Called without the lock.
func (c *connection) shutdown() {
	c.stopOnce.Do(func() { close(c.stop) })
	c.ice.close()
}

func (c *connection) iceCandidate(sdp string, relay bool, addr string) {
	n := c.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if c.closed {
		return
	}
	if !relay && !n.cfg.HostIP.IsValid() {
		// With the wildcard socket pion enumerates every interface address;
		// loopback and link-local ones are useless to a remote peer.
		if a, err := netip.ParseAddr(addr); err == nil && (a.IsLoopback() || a.IsLinkLocalUnicast()) {
			return
		}
	}
	c.localCands = append(c.localCands, sdp)
	if relay {
		if a, err := netip.ParseAddr(addr); err == nil {
			c.relayCands[sdp] = a.Unmap()
		}
	}
	n.events.push(Event{Kind: EventNewCandidate, Peer: c.id, Candidate: sdp})
}

// invalidateRelayCandidatesLocked emits invalidations for local relay
// candidates whose address is on a removed relay.
func (c *connection) invalidateRelayCandidatesLocked(gone map[netip.Addr]bool) {
	for sdp, a := range c.relayCands {
		if gone[a] {
			delete(c.relayCands, sdp)
			c.n.events.push(Event{Kind: EventInvalidateCandidate, Peer: c.id, Candidate: sdp})
		}
	}
}

func (c *connection) iceState(s iceState) {
	n := c.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if c.closed {
		return
	}
	now := n.clock.Now()
	switch s {
	case iceConnected:
		c.lc.iceRecovered()
	case iceDisconnected:
		c.lc.iceDisconnected(now)
	case iceFailed:
		c.lc.iceFailedNow()
	}
}

func (c *connection) icePair(p PairInfo) {
	n := c.n
	n.mu.Lock()
	if c.closed {
		n.mu.Unlock()
		return
	}
	c.pair = &p
	if !c.lc.nominated {
		c.nominatedAt = time.Now()
		defer n.wakeTick()
	}
	c.lc.pairNominated()
	c.applyPathLocked()
	kick := c.params.Role == RoleControlling && !c.kicked && c.ep.path.Load().kind != PathNone
	if kick {
		c.kicked = true
	}
	pk := c.params.PublicKey
	n.mu.Unlock()
	n.log.Debug("pair selected", zap.String("peer", c.id), zap.String("local", p.Local), zap.String("remote", p.Remote))
	if kick {
		c.kickHandshake(pk)
	}
}

func (c *connection) iceConnected(rw io.ReadWriter) {
	n := c.n
	n.mu.Lock()
	if c.closed {
		n.mu.Unlock()
		return
	}
	c.rw = rw
	kick := false
	if c.pair != nil {
		c.applyPathLocked()
		kick = c.params.Role == RoleControlling && !c.kicked && c.ep.path.Load().kind != PathNone
		if kick {
			c.kicked = true
		}
	}
	pk := c.params.PublicKey
	n.mu.Unlock()
	if kick {
		c.kickHandshake(pk)
	}
}

// kickHandshake makes the controlling side start the WireGuard handshake as
// soon as a path exists (Firezone: the controlling side initiates after
// nomination), so the connection is established without waiting for data.
func (c *connection) kickHandshake(pk Key) {
	if peer := c.n.dev.LookupPeer(device.NoisePublicKey(pk)); peer != nil {
		peer.SendKeepalive()
	}
}

// applyPathLocked points the Bind at the nominated pair. A local relay
// candidate needs the agent's conn (available once Dial/Accept returned);
// until then the peer has no path and a handshake is held back.
func (c *connection) applyPathLocked() {
	b := c.n.bind
	p := c.pair
	if !p.LocalRelay {
		b.SetPath(c.id, PathDirect, p.RemoteAddr, nil)
		return
	}
	if c.n.sharedTURN() && c.applySharedTURNLocked() {
		return
	}
	if c.rw == nil {
		b.SetPath(c.id, PathNone, netip.AddrPort{}, nil)
		return
	}
	b.SetPath(c.id, PathRelayed, netip.AddrPort{}, c.rw)
	if !c.readerRunning {
		c.readerRunning = true
		go c.readRelayed(c.rw)
	}
}

// readRelayed moves WireGuard datagrams that arrive through our relay
// allocation (the agent's conn) into the Bind's relay ring. One goroutine
// per relayed peer; it ends when the agent closes.
func (c *connection) readRelayed(r io.Reader) {
	buf := make([]byte, 8192) // pion's receive MTU: a shorter buffer fails reads
	ring := c.n.bind.relay
	for {
		n, err := r.Read(buf)
		if err != nil {
			return
		}
		if Classify(buf[:n]) != KindWireGuard {
			c.n.bind.nUnknown.Add(1)
			continue
		}
		if !ring.push(buf[:n], c.ep, c.stop) {
			select {
			case <-c.stop:
				return
			default:
				c.n.bind.nUnknown.Add(1) // larger than a slot
			}
		}
	}
}

// tickLoop evaluates lifecycle timers every TickInterval, and more often
// while a connection waits for its WireGuard handshake (see
// handshakePollDelay); icePair wakes it at once on a nomination.
func (n *Node) tickLoop() {
	defer n.wg.Done()
	t := time.NewTimer(n.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		case <-n.tickNow:
		}
		t.Reset(n.tick())
	}
}

// wakeTick asks the tick loop for an immediate tick.
func (n *Node) wakeTick() {
	select {
	case n.tickNow <- struct{}{}:
	default:
	}
}

// handshakePollDelay is how long to wait before polling WireGuard again for
// a connection whose pair was nominated age ago and whose handshake is not
// done yet. wireguard-go has no handshake callback, so completion is seen by
// polling its counters; at a fixed 100 ms that added 50 ms on average (up
// to 100) to every connection set-up, because the client only sends its
// buffered packets once the connection is established. A handshake takes
// one round trip, so the polls start every 2 ms and back off with age
// (age/8): about 40 polls in the first second, then TickInterval.
func handshakePollDelay(age, max time.Duration) time.Duration {
	d := age / 8
	switch {
	case d < 2*time.Millisecond:
		d = 2 * time.Millisecond
	case d > max:
		d = max
	}
	return d
}

// tick polls WireGuard's counters when a connection waits for its
// handshake (or once a second for idle detection), applies the timers and
// returns when the next tick is due.
func (n *Node) tick() time.Duration {
	next := n.cfg.TickInterval
	now := n.clock.Now()
	n.mu.Lock()
	need := now.Sub(n.lastPoll) >= time.Second || now.Before(n.lastPoll)
	for _, c := range n.conns {
		if !c.lc.handshake && c.lc.nominated {
			need = true
			if d := handshakePollDelay(time.Since(c.nominatedAt), n.cfg.TickInterval); d < next {
				next = d
			}
		}
	}
	n.mu.Unlock()
	var counters map[string]peerCounters
	if need {
		counters = n.peerCounters()
	}
	n.mu.Lock()
	if need {
		n.lastPoll = now
	}
	var failed []*connection
	for _, c := range n.conns {
		if pc, ok := counters[c.params.PublicKey.hex()]; ok {
			if !pc.lastHandshake.IsZero() {
				c.lc.handshakeDone()
			}
			if pc.rx != c.lastRx || pc.tx != c.lastTx {
				c.lastRx, c.lastTx = pc.rx, pc.tx
				c.lc.activity(now)
			}
		}
		switch c.lc.tick(now) {
		case lcEstablished:
			n.events.push(Event{Kind: EventConnectionEstablished, Peer: c.id, Path: c.pathKind()})
		case lcFailed:
			failed = append(failed, c)
		}
	}
	for _, c := range failed {
		n.removeLocked(c)
		n.events.push(Event{Kind: EventConnectionFailed, Peer: c.id, Reason: c.lc.failReason, Active: c.lc.established && !c.lc.idle})
	}
	n.mu.Unlock()
	return next
}
