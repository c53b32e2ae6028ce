package snownet

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v2"
	"go.uber.org/zap"
)

// This file lets every pion agent gather a relay candidate from ONE shared
// allocation per relay on the shared socket. pion/ice v3 cannot take a
// relay candidate it did not gather, and it gathers by running its own TURN
// client on a socket from AgentConfig.Net. So that Net (sharedTURNNet, see
// turnnet.go) hands pion a turnVConn, and a turnProxy answers the TURN
// requests pion's client writes to it locally:
//
//	ALLOCATE          401 with realm/nonce, then success carrying the
//	                  shared allocation's relayed address (allocated on the
//	                  first request)
//	REFRESH           success (the proxy refreshes the real allocation)
//	CREATE-PERMISSION a real CHANNEL-BIND per peer (a channel is also the
//	                  permission, as at Firezone's relay)
//	CHANNEL-BIND      the agent's channel number is mapped to ours
//	ChannelData, Send forwarded as ChannelData on our channel
//
// Inbound ChannelData from the relay is routed by channel -> peer -> the
// agent that asked for that peer and re-framed with the agent's channel
// number (or as a Data indication before pion bound one).

// turnProxy owns the shared allocation on one relay.
//
// Concurrency: safe for concurrent use. handleChannelData is called by the
// Bind's receive path and never blocks; the request handlers run on their
// own goroutines because they wait for the relay.
type turnProxy struct {
	alloc *turnAlloc
	send  func(p []byte, to netip.AddrPort) error
	log   *zap.Logger
	realm string // what our 401s name (the relay's realm, or "firezone")

	ctx    context.Context // ends when the proxy closes
	cancel context.CancelFunc

	allocMu sync.Mutex // serialises ALLOCATE
	maint   sync.Once

	mu     sync.Mutex
	closed bool
	byPeer map[netip.AddrPort]*turnVConn // which agent receives a peer's data
	conns  map[*turnVConn]struct{}
	wg     sync.WaitGroup
	// refusedRealm is called when the relay names another realm.
	refusedRealm func()
	// data routes our channels to WireGuard peers (the Bind's data path).
	data turnData
	// rx counts datagrams from the relay, tx our sends of data to it (per
	// batch); the watchdog (turn_watch.go) compares them.
	rx, tx atomic.Uint64
	watch  turnWatchConfig
}

func newTURNProxy(r Relay, send func([]byte, netip.AddrPort) error, log *zap.Logger) *turnProxy {
	if log == nil {
		log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	realm := r.Realm
	if realm == "" {
		realm = "firezone"
	}
	return &turnProxy{
		alloc:  newTURNAlloc(turnAllocConfig{relay: r, send: send, log: log}),
		send:   send,
		log:    log,
		realm:  realm,
		ctx:    ctx,
		cancel: cancel,
		byPeer: make(map[netip.AddrPort]*turnVConn),
		conns:  make(map[*turnVConn]struct{}),
	}
}

// server is the relay's address.
func (p *turnProxy) server() netip.AddrPort { return p.alloc.server() }

// turnVerifyAfter: a new agent is given the shared allocation's address
// without asking the relay only if the relay answered us this recently;
// otherwise one REFRESH first proves the allocation still exists (a relay
// restart loses it, and an agent gathering a dead address fails again).
const (
	turnVerifyAfter   = 5 * time.Second
	turnVerifyTimeout = 2 * time.Second
)

// ensureAllocated creates the shared allocation if there is none and
// starts its maintenance.
func (p *turnProxy) ensureAllocated() error {
	p.allocMu.Lock()
	defer p.allocMu.Unlock()
	if p.alloc.relayedAddr().IsValid() {
		if time.Since(p.alloc.lastSuccess()) < turnVerifyAfter {
			return nil
		}
		// Silent for a while: make sure the relay still has it (it may
		// have restarted) before handing its address to a new agent. The
		// check is short: pion's client gives up on its ALLOCATE after
		// about 8 s, and a relay that lost the allocation may not answer.
		ctx, cancel := context.WithTimeout(p.ctx, turnVerifyTimeout)
		err := p.alloc.refresh(ctx, p.alloc.allocationLifetime())
		cancel()
		if err == nil {
			return nil
		}
		p.log.Debug("turn proxy: allocation lost, re-allocating", zap.Stringer("relay", p.server()), zap.Error(err))
		return p.alloc.reallocate(p.ctx)
	}
	if err := p.alloc.allocate(p.ctx); err != nil {
		if errors.Is(err, ErrTURNRealm) && p.refusedRealm != nil {
			p.refusedRealm()
		}
		return err
	}
	p.maint.Do(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.closed {
			return
		}
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			p.alloc.maintain(p.ctx)
		}()
		go func() {
			defer p.wg.Done()
			p.watchdog(p.ctx)
		}()
	})
	return nil
}

// attach registers a new virtual conn.
func (p *turnProxy) attach(vc *turnVConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[vc] = struct{}{}
	return true
}

// detach forgets vc and the peers it received for.
func (p *turnProxy) detach(vc *turnVConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, vc)
	for peer, v := range p.byPeer {
		if v == vc {
			delete(p.byPeer, peer)
		}
	}
}

// close deletes the allocation and closes every virtual conn on it.
func (p *turnProxy) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	conns := make([]*turnVConn, 0, len(p.conns))
	for vc := range p.conns {
		conns = append(conns, vc)
	}
	p.mu.Unlock()
	for _, vc := range conns {
		_ = vc.Close()
	}
	p.cancel()
	p.wg.Wait()
	p.alloc.close()
}

// goServe answers req on its own goroutine, which close waits for.
func (p *turnProxy) goServe(vc *turnVConn, req *stun.Message) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.serve(vc, req)
	}()
}

// handleSTUN takes answers to the proxy's own requests.
func (p *turnProxy) handleSTUN(b []byte) bool { return p.alloc.handleSTUN(b) }

// handleChannelData routes a ChannelData frame from the relay to the agent
// that asked for its peer. It reports whether a conn took it.
func (p *turnProxy) handleChannelData(b []byte) bool {
	num, payload, err := ParseChannelData(b)
	if err != nil {
		return false
	}
	peer, ok := p.alloc.peerFor(num)
	if !ok {
		return false
	}
	p.mu.Lock()
	vc := p.byPeer[peer]
	p.mu.Unlock()
	if vc == nil {
		return false
	}
	return vc.deliverFromPeer(peer, payload)
}

// sendToPeer sends payload to peer on our channel (which must exist).
func (p *turnProxy) sendToPeer(peer netip.AddrPort, payload []byte) error {
	num, ok := p.alloc.channelFor(peer)
	if !ok {
		return errNoChannel
	}
	bp := framePool.Get().(*[]byte)
	frame := AppendChannelData((*bp)[:0], num, payload)
	p.tx.Add(1)
	err := p.send(frame, p.server())
	*bp = frame
	framePool.Put(bp)
	return err
}

var errNoChannel = errors.New("snownet: no turn channel to peer")

// framePool holds buffers for re-framed ChannelData (control path and the
// pion-driven data path; the Bind's own relayed data path frames in place).
var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// serve answers one TURN request pion's client wrote to vc. It runs on its
// own goroutine (requests wait for the relay).
func (p *turnProxy) serve(vc *turnVConn, req *stun.Message) {
	var res *stun.Message
	var err error
	switch req.Type.Method {
	case stun.MethodAllocate:
		res, err = p.serveAllocate(req)
	case stun.MethodRefresh:
		lt := []byte{0, 0, 0x02, 0x58} // 600 s unless asked otherwise
		if v, e := req.Get(stun.AttrLifetime); e == nil && len(v) == 4 {
			lt = v
		}
		res, err = p.success(req, rawAttr{stun.AttrLifetime, lt})
	case stun.MethodCreatePermission:
		res, err = p.servePermission(vc, req)
	case stun.MethodChannelBind:
		res, err = p.serveChannelBind(vc, req)
	default:
		res, err = p.failure(req, stun.CodeBadRequest)
	}
	if err != nil {
		p.log.Debug("turn proxy: request failed", zap.Stringer("method", req.Type.Method), zap.Error(err))
		if res == nil {
			res, err = p.failure(req, stun.CodeServerError)
			if err != nil {
				return
			}
		}
	}
	vc.deliver(res.Raw, p.server())
}

func (p *turnProxy) serveAllocate(req *stun.Message) (*stun.Message, error) {
	if !req.Contains(stun.AttrUsername) {
		// pion's client starts unauthenticated and expects a 401 with a
		// realm and nonce; it never checks our integrity.
		return stun.Build(stun.NewTransactionIDSetter(req.TransactionID),
			stun.NewType(req.Type.Method, stun.ClassErrorResponse),
			stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized, Reason: []byte("Unauthorized")},
			stun.NewRealm(p.realm), stun.NewNonce("gozone-local"), stun.Fingerprint)
	}
	if err := p.ensureAllocated(); err != nil {
		var te *TURNError
		if errors.As(err, &te) {
			res, ferr := p.failure(req, te.Code)
			if ferr == nil {
				return res, err
			}
		}
		return nil, err
	}
	relayed := p.alloc.relayedAddr()
	mapped := p.alloc.mappedAddr()
	var lt [4]byte
	binary.BigEndian.PutUint32(lt[:], uint32(p.alloc.allocationLifetime()/time.Second))
	setters := []stun.Setter{
		xorAddr{stun.AttrXORRelayedAddress, relayed},
		rawAttr{stun.AttrLifetime, lt[:]},
	}
	if mapped.IsValid() {
		setters = append(setters, xorAddr{stun.AttrXORMappedAddress, mapped})
	}
	return p.success(req, setters...)
}

func (p *turnProxy) servePermission(vc *turnVConn, req *stun.Message) (*stun.Message, error) {
	var peers []netip.AddrPort
	for _, a := range req.Attributes {
		if a.Type != stun.AttrXORPeerAddress {
			continue
		}
		var xa stun.XORMappedAddress
		m := &stun.Message{TransactionID: req.TransactionID, Attributes: stun.Attributes{a}}
		if err := xa.GetFromAs(m, stun.AttrXORPeerAddress); err != nil {
			return p.failure(req, stun.CodeBadRequest)
		}
		peers = append(peers, udpAddrPort(xa.IP, xa.Port))
	}
	if len(peers) == 0 {
		return p.failure(req, stun.CodeBadRequest)
	}
	if err := p.ensureAllocated(); err != nil {
		return nil, err
	}
	for _, peer := range peers {
		p.route(peer, vc)
		if err := p.bind(peer); err != nil {
			return nil, err
		}
	}
	return p.success(req)
}

func (p *turnProxy) serveChannelBind(vc *turnVConn, req *stun.Message) (*stun.Message, error) {
	var xa stun.XORMappedAddress
	if err := xa.GetFromAs(req, stun.AttrXORPeerAddress); err != nil {
		return p.failure(req, stun.CodeBadRequest)
	}
	v, err := req.Get(stun.AttrChannelNumber)
	if err != nil || len(v) != 4 {
		return p.failure(req, stun.CodeBadRequest)
	}
	num := binary.BigEndian.Uint16(v[:2])
	peer := udpAddrPort(xa.IP, xa.Port)
	if err := p.ensureAllocated(); err != nil {
		return nil, err
	}
	p.route(peer, vc)
	if err := p.bind(peer); err != nil {
		return nil, err
	}
	vc.bindVirtual(num, peer)
	return p.success(req)
}

// bind binds a real channel to peer; if the relay lost the allocation it
// is re-created once and the bind retried.
func (p *turnProxy) bind(peer netip.AddrPort) error {
	_, err := p.alloc.bindChannel(p.ctx, peer)
	if !lostAllocation(err) {
		return err
	}
	p.allocMu.Lock()
	err = p.alloc.check(p.ctx)
	p.allocMu.Unlock()
	if err != nil {
		return err
	}
	_, err = p.alloc.bindChannel(p.ctx, peer)
	return err
}

// route makes vc the receiver of peer's data.
func (p *turnProxy) route(peer netip.AddrPort, vc *turnVConn) {
	p.mu.Lock()
	p.byPeer[peer] = vc
	p.mu.Unlock()
}

func (p *turnProxy) success(req *stun.Message, attrs ...stun.Setter) (*stun.Message, error) {
	s := append([]stun.Setter{stun.NewTransactionIDSetter(req.TransactionID),
		stun.NewType(req.Type.Method, stun.ClassSuccessResponse)}, attrs...)
	return stun.Build(append(s, stun.Fingerprint)...)
}

func (p *turnProxy) failure(req *stun.Message, code stun.ErrorCode) (*stun.Message, error) {
	return stun.Build(stun.NewTransactionIDSetter(req.TransactionID),
		stun.NewType(req.Type.Method, stun.ClassErrorResponse),
		stun.ErrorCodeAttribute{Code: code}, stun.Fingerprint)
}

// rawAttr adds an attribute with a ready value.
type rawAttr struct {
	t stun.AttrType
	v []byte
}

func (a rawAttr) AddTo(m *stun.Message) error { m.Add(a.t, a.v); return nil }

// xorAddr adds an XOR-encoded address attribute of type t.
type xorAddr struct {
	t  stun.AttrType
	ap netip.AddrPort
}

func (a xorAddr) AddTo(m *stun.Message) error {
	xa := stun.XORMappedAddress{IP: net.IP(a.ap.Addr().AsSlice()), Port: int(a.ap.Port())}
	return xa.AddToAs(m, a.t)
}
