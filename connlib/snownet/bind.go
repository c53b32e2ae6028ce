package snownet

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/conn"
)

// Bind errors.
var (
	// ErrNoPath is returned by Send for a data packet to a peer whose ICE
	// connection has no usable path (yet).
	ErrNoPath = errors.New("snownet: no path to peer")
	// ErrUnknownEndpoint is returned by Send for an endpoint type the Bind
	// did not create.
	ErrUnknownEndpoint = errors.New("snownet: unknown endpoint type")
	// ErrUnknownPeer is returned by ParseEndpoint for an empty peer id.
	ErrUnknownPeer = errors.New("snownet: empty peer id")
)

// Default socket buffer sizes, sized for 10 Gbit/s like Firezone: the
// receive buffer holds 10 ms, the send buffer 1 ms of traffic.
const (
	DefaultRecvBufferSize = 16 << 20
	DefaultSendBufferSize = 2 << 20
)

// BindConfig configures a Bind. The zero value is usable.
type BindConfig struct {
	// Inner is the socket layer that is wrapped; nil means
	// conn.NewStdNetBind() (recvmmsg/sendmmsg, UDP GSO/GRO, one socket per
	// address family). A custom Inner must accept *conn.StdNetEndpoint in
	// Send and return endpoints from which the source address can be read
	// (a *conn.StdNetEndpoint, or DstToString giving an ip:port).
	Inner conn.Bind
	// RecvBufferSize and SendBufferSize are SO_RCVBUF/SO_SNDBUF for the
	// shared sockets (Linux with StdNetBind only); 0 means the defaults
	// above, negative leaves StdNetBind's own setting.
	RecvBufferSize int
	SendBufferSize int
	// MaxPacketSize is the largest relayed WireGuard datagram the Bind
	// queues (default 2048, enough for a 1420-byte MTU plus WireGuard's 32
	// bytes); larger ones are dropped and counted as Unknown.
	MaxPacketSize int
	// StdReceive keeps StdNetBind's own receive functions instead of the
	// Bind's batched reader (Linux): for comparisons and as a fallback.
	StdReceive bool
	// Logger; nil means no logging.
	Logger *zap.Logger
}

// BindStats counts what the classifier saw on the shared sockets.
type BindStats struct {
	WireGuard   uint64 // datagrams handed to WireGuard
	STUN        uint64 // datagrams handed to ICE
	STUNDropped uint64 // STUN dropped (ICE queue full, too big, no mux)
	ChannelData uint64 // TURN ChannelData dropped (no TURN client on the shared socket)
	Unknown     uint64 // anything else, dropped
	RelayedIn   uint64 // WireGuard datagrams received through relays
	RelayedOut  uint64 // WireGuard datagrams sent through relays
	NoPath      uint64 // sends dropped because the peer had no path
	// RealmRefused counts TURN error responses dropped because they named
	// another realm than the relay's configured one (filled by Node).
	RealmRefused uint64
}

// Bind is a wireguard-go conn.Bind that shares its UDP sockets with ICE.
//
// It wraps an inner Bind (StdNetBind by default) without changing its
// socket handling. Every received datagram is classified: WireGuard goes to
// the device, STUN goes to the ICE mux through a virtual PacketConn (see
// STUNConn) and its slot is zeroed, anything else is dropped and counted.
// Endpoints are keyed by peer id (ParseEndpoint takes the id); each peer's
// path is held atomically and swapped by SetPath. Relayed WireGuard arrives
// through an extra ReceiveFunc fed by per-peer readers (see relayRing).
//
// Concurrency: all methods are safe for concurrent use. wireguard-go calls
// Open/Close/Send/ParseEndpoint; snownet calls SetPath/RemovePeer/
// attachSTUN from its own goroutines.
type Bind struct {
	inner  conn.Bind
	log    *zap.Logger
	rcvbuf int
	sndbuf int

	mu     sync.Mutex
	port   uint16
	closed chan struct{} // closed by Close; nil while not open
	peers  map[string]*peerEndpoint

	stun  atomic.Pointer[stunRoutes]
	relay *relayRing
	// turn maps relay addresses to the shared TURN allocations on this
	// socket (the default; see Config.PionTURN); nil or empty without them.
	turn atomic.Pointer[map[netip.AddrPort]*turnProxy]
	// readers replace StdNetBind's receive on its sockets (Linux; see
	// data_linux.go); guarded by mu.
	readers []*batchReader
	// StdReceive keeps StdNetBind's own receive functions (BindConfig).
	stdReceive bool

	nWireGuard, nSTUN, nSTUNDropped, nChannelData, nUnknown atomic.Uint64
	nRelayedIn, nRelayedOut, nNoPath                        atomic.Uint64
}

var _ conn.Bind = (*Bind)(nil)

// NewBind returns a Bind that is not open yet.
func NewBind(cfg BindConfig) *Bind {
	if cfg.Inner == nil {
		cfg.Inner = conn.NewStdNetBind()
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.RecvBufferSize == 0 {
		cfg.RecvBufferSize = DefaultRecvBufferSize
	}
	if cfg.MaxPacketSize < relaySlotSize {
		cfg.MaxPacketSize = relaySlotSize
	}
	if cfg.SendBufferSize == 0 {
		cfg.SendBufferSize = DefaultSendBufferSize
	}
	return &Bind{
		inner:  cfg.Inner,
		log:    cfg.Logger,
		rcvbuf: cfg.RecvBufferSize,
		sndbuf: cfg.SendBufferSize,
		peers:  make(map[string]*peerEndpoint),
		relay:  newRelayRing(relayRingSlots, cfg.MaxPacketSize),

		stdReceive: cfg.StdReceive,
	}
}

// Open opens the inner sockets on port (0: any) and returns the wrapped
// receive functions plus one for relayed traffic.
func (b *Bind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	fns, actual, err := b.inner.Open(port)
	if err != nil {
		return nil, 0, err
	}
	if _, ok := b.inner.(*conn.StdNetBind); ok {
		setSocketBuffers(actual, b.rcvbuf, b.sndbuf, b.log)
		fns = b.openReaders(actual, fns)
	}
	b.port = actual
	b.closed = make(chan struct{})
	out := make([]conn.ReceiveFunc, 0, len(fns)+1)
	for _, fn := range fns {
		out = append(out, b.wrapReceive(fn))
	}
	out = append(out, b.relay.receiveFunc(b.closed, &b.nRelayedIn))
	return out, actual, nil
}

// Close closes the inner sockets; every ReceiveFunc returns net.ErrClosed.
func (b *Bind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed != nil {
		close(b.closed)
		b.closed = nil
	}
	b.closeReaders()
	return b.inner.Close()
}

// Port is the port the sockets were last opened on (0 before Open).
func (b *Bind) Port() uint16 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.port
}

// SetMark sets the fwmark on the inner sockets.
func (b *Bind) SetMark(mark uint32) error { return b.inner.SetMark(mark) }

// BatchSize is the inner Bind's batch size (128 on Linux).
func (b *Bind) BatchSize() int { return b.inner.BatchSize() }

// ParseEndpoint returns the endpoint of peer id, registering it if needed.
// It is what the UAPI `endpoint=` value is passed to.
func (b *Bind) ParseEndpoint(id string) (conn.Endpoint, error) {
	if id == "" {
		return nil, ErrUnknownPeer
	}
	return b.peer(id), nil
}

func (b *Bind) peer(id string) *peerEndpoint {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.peers[id]
	if !ok {
		e = newPeerEndpoint(id)
		b.peers[id] = e
	}
	return e
}

// RemovePeer forgets peer id; its endpoint gets no path.
func (b *Bind) RemovePeer(id string) {
	b.mu.Lock()
	e := b.peers[id]
	delete(b.peers, id)
	b.mu.Unlock()
	if e != nil {
		if old := e.path.Swap(&path{kind: PathNone}); old.turn != nil {
			old.turn.data.forget(e)
		}
		e.takePending()
	}
}

// SetPath points peer id at a new path: kind PathDirect sends to addr
// through the shared socket, PathRelayed writes to relay, PathNone drops.
// A handshake initiation WireGuard tried to send while there was no path is
// flushed on the new path.
func (b *Bind) SetPath(id string, kind PathKind, addr netip.AddrPort, relay io.Writer) {
	e := b.peer(id)
	p := &path{kind: kind}
	switch kind {
	case PathDirect:
		p.direct = &conn.StdNetEndpoint{AddrPort: netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())}
	case PathRelayed:
		p.relay = relay
	}
	if old := e.path.Swap(p); old.turn != nil {
		old.turn.data.forget(e)
	}
	if kind == PathNone {
		return
	}
	if init := e.takePending(); init != nil {
		if err := b.sendPath(e, p, [][]byte{init}); err != nil {
			b.log.Debug("flushing pending handshake failed", zap.String("peer", id), zap.Error(err))
		}
	}
}

// Send sends bufs to ep: a peer endpoint follows the peer's current path;
// a plain *conn.StdNetEndpoint goes straight to the inner Bind.
func (b *Bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	switch e := ep.(type) {
	case *peerEndpoint:
		p := e.path.Load()
		if p.kind == PathNone {
			if n := len(bufs); n > 0 && isHandshake(bufs[n-1]) {
				e.keepPending(bufs[n-1])
				return nil
			}
			e.noPath.Add(uint64(len(bufs)))
			b.nNoPath.Add(uint64(len(bufs)))
			return ErrNoPath
		}
		return b.sendPath(e, p, bufs)
	case *conn.StdNetEndpoint:
		return b.inner.Send(bufs, e)
	default:
		return ErrUnknownEndpoint
	}
}

func (b *Bind) sendPath(e *peerEndpoint, p *path, bufs [][]byte) error {
	var n uint64
	for _, buf := range bufs {
		n += uint64(len(buf))
	}
	e.txBytes.Add(n)
	if p.kind == PathDirect {
		return b.inner.Send(bufs, p.direct)
	}
	if p.turn != nil {
		return b.sendTURN(p, bufs)
	}
	// One write per packet: pion's conn has no batch API. A failed packet
	// (e.g. one pion mistakes for STUN because its receiver index equals
	// the magic cookie) does not stop the rest of the batch.
	var firstErr error
	var sent uint64
	for _, buf := range bufs {
		if _, err := p.relay.Write(buf); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		sent++
	}
	b.nRelayedOut.Add(sent)
	return firstErr
}

// sendTo sends one datagram to addr through the shared socket; the ICE
// mux's writes come here.
func (b *Bind) sendTo(p []byte, addr netip.AddrPort) error {
	ep := &conn.StdNetEndpoint{AddrPort: netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())}
	return b.inner.Send([][]byte{p}, ep)
}

// wrapReceive classifies every datagram the inner ReceiveFunc returns.
func (b *Bind) wrapReceive(fn conn.ReceiveFunc) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n, err := fn(bufs, sizes, eps)
		var wg, relayed uint64
		// Datagrams from a relay are counted for its watchdog once per run
		// of datagrams from the same relay, not per packet.
		var fromRelay *turnProxy
		var fromRelayN uint64
		for i := 0; i < n; i++ {
			if sizes[i] == 0 {
				continue
			}
			p := bufs[i][:sizes[i]]
			switch Classify(p) {
			case KindWireGuard:
				wg++
				continue
			case KindSTUN:
				if tp := b.turnProxyFrom(eps[i]); tp != nil {
					fromRelay, fromRelayN = countRelay(fromRelay, fromRelayN, tp)
					if tp.handleSTUN(p) {
						break
					}
				}
				b.deliverSTUN(p, eps[i])
			case KindChannelData:
				if tp := b.turnProxyFrom(eps[i]); tp != nil {
					fromRelay, fromRelayN = countRelay(fromRelay, fromRelayN, tp)
					if b.unwrapTURN(tp, bufs, sizes, eps, i) {
						relayed++
					}
					continue
				}
				b.nChannelData.Add(1)
			default:
				b.nUnknown.Add(1)
			}
			sizes[i] = 0
		}
		if wg > 0 {
			b.nWireGuard.Add(wg)
		}
		if relayed > 0 {
			b.nRelayedIn.Add(relayed)
		}
		if fromRelay != nil {
			fromRelay.rx.Add(fromRelayN)
		}
		return n, err
	}
}

// countRelay counts one datagram from relay tp in a run (cur, n), flushing
// the run's count to its relay when the relay changes.
func countRelay(cur *turnProxy, n uint64, tp *turnProxy) (*turnProxy, uint64) {
	if cur == tp {
		return cur, n + 1
	}
	if cur != nil {
		cur.rx.Add(n)
	}
	return tp, 1
}

func (b *Bind) deliverSTUN(p []byte, ep conn.Endpoint) {
	rt := b.stun.Load()
	if rt == nil || len(rt.all) == 0 {
		b.nSTUNDropped.Add(1)
		return
	}
	from, ok := endpointAddr(ep)
	if !ok {
		b.nSTUNDropped.Add(1)
		return
	}
	ok = false
	switch {
	case len(rt.all) == 1:
		ok = rt.all[0].deliver(p, from)
	case isSTUNRequest(p):
		// Requests name their agent in USERNAME (see muxpool.go).
		sc := rt.byPair[string(stunUsername(p))]
		if sc == nil {
			sc = rt.all[0]
		}
		ok = sc.deliver(p, from)
	default:
		// Responses carry no USERNAME: every mux gets a copy and the agent
		// that sent the transaction takes it.
		for _, sc := range rt.all {
			if sc.deliver(p, from) {
				ok = true
			}
		}
	}
	if ok {
		b.nSTUN.Add(1)
	} else {
		b.nSTUNDropped.Add(1)
	}
}

// endpointAddr is the source address of a received datagram.
func endpointAddr(ep conn.Endpoint) (netip.AddrPort, bool) {
	if se, ok := ep.(*conn.StdNetEndpoint); ok {
		return netip.AddrPortFrom(se.AddrPort.Addr().Unmap(), se.AddrPort.Port()), true
	}
	if ep == nil {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(ep.DstToString())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// turnProxyFrom returns the shared allocation whose relay sent from ep.
func (b *Bind) turnProxyFrom(ep conn.Endpoint) *turnProxy {
	m := b.turn.Load()
	if m == nil || len(*m) == 0 {
		return nil
	}
	from, ok := endpointAddr(ep)
	if !ok {
		return nil
	}
	return (*m)[from]
}

// turnProxyAt returns the shared allocation on the relay at ap.
func (b *Bind) turnProxyAt(ap netip.AddrPort) *turnProxy {
	m := b.turn.Load()
	if m == nil {
		return nil
	}
	return (*m)[ap]
}

// attachSTUN makes sc the only destination of received STUN (tests).
func (b *Bind) attachSTUN(sc *STUNConn) { b.stun.Store(&stunRoutes{all: []*STUNConn{sc}}) }

// Stats returns the classifier counters.
func (b *Bind) Stats() BindStats {
	return BindStats{
		WireGuard:   b.nWireGuard.Load(),
		STUN:        b.nSTUN.Load(),
		STUNDropped: b.nSTUNDropped.Load(),
		ChannelData: b.nChannelData.Load(),
		Unknown:     b.nUnknown.Load(),
		RelayedIn:   b.nRelayedIn.Load(),
		RelayedOut:  b.nRelayedOut.Load(),
		NoPath:      b.nNoPath.Load(),
	}
}

// isClosedErr reports whether err means the socket is gone.
func isClosedErr(err error) bool { return errors.Is(err, net.ErrClosed) }
