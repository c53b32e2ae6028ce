package snownet

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v2"
	"go.uber.org/zap"
)

// This file is a TURN client (RFC 8656, UDP only) that does no socket IO of
// its own: requests leave through a send function (the Bind's shared
// socket) and responses come back through handleSTUN, which the receive
// path calls for STUN from the relay's address. It keeps ONE allocation per
// relay and binds a channel per peer, as Firezone does (reference §2.5), so
// that many ICE agents can share one allocation on one 5-tuple.

// TURN allocation errors.
var (
	// ErrTURNTimeout: the relay answered none of the retransmissions.
	ErrTURNTimeout = errors.New("snownet: turn request timed out")
	// ErrTURNUnauthorized: the relay refused our credentials (a 401 after
	// we had authenticated with its nonce).
	ErrTURNUnauthorized = errors.New("snownet: turn credentials refused")
	// ErrTURNRealm: the relay's 401 named another realm than expected.
	ErrTURNRealm = errors.New("snownet: turn relay named an unexpected realm")
	// ErrTURNIntegrity: a success response failed MESSAGE-INTEGRITY.
	ErrTURNIntegrity = errors.New("snownet: turn response failed message integrity")
	// ErrTURNNoAllocation: the operation needs an allocation first.
	ErrTURNNoAllocation = errors.New("snownet: no turn allocation")
	// ErrTURNClosed: the allocation client was closed.
	ErrTURNClosed = errors.New("snownet: turn allocation closed")
	// ErrTURNNoChannels: every channel number is in use.
	ErrTURNNoChannels = errors.New("snownet: no free turn channel number")
)

// TURNError is an error response from the relay.
type TURNError struct {
	Method stun.Method
	Code   stun.ErrorCode
	Reason string
}

func (e *TURNError) Error() string {
	return fmt.Sprintf("snownet: turn %s failed: %d %s", e.Method, e.Code, e.Reason)
}

// Channel numbers we hand out (Firezone's range, reference §2.4).
const (
	turnFirstChannel = 0x4000
	turnLastChannel  = 0x4FFF
)

// Defaults of the TURN client (Firezone's values, reference §2.5).
const (
	turnDefaultRTO     = time.Second
	turnDefaultTimeout = 8 * time.Second
	turnRTOMultiplier  = 1.5
	turnChannelRefresh = 5 * time.Minute // channels live 10 min
	turnSoftware       = "gozone"
)

// turnAllocConfig configures a turnAlloc.
type turnAllocConfig struct {
	relay Relay
	// send writes one datagram to the relay through the shared socket.
	// It must not retain p.
	send func(p []byte, to netip.AddrPort) error
	// rto is the first retransmission timeout (default 1 s, then ×1.5);
	// timeout is when a request gives up (default 8 s).
	rto, timeout time.Duration
	// tick is how often maintain checks its timers (default 10 s).
	tick time.Duration
	log  *zap.Logger
}

// turnChannel is one channel binding of the shared allocation.
type turnChannel struct {
	number  uint16
	peer    netip.AddrPort
	boundAt time.Time // last successful CHANNEL-BIND
}

// turnAlloc is one TURN allocation on the shared socket.
//
// Concurrency: all methods are safe for concurrent use. Requests (allocate,
// refresh, bindChannel) block until answered; handleSTUN must be called
// from the receive path for every STUN message from the relay and never
// blocks.
type turnAlloc struct {
	cfg turnAllocConfig
	log *zap.Logger

	mu        sync.Mutex
	closed    bool
	realm     string
	nonce     string
	integrity stun.MessageIntegrity // nil until we have the realm
	relayed   netip.AddrPort        // valid while allocated
	mapped    netip.AddrPort
	lifetime  time.Duration
	pending   map[[stun.TransactionIDSize]byte]chan *stun.Message
	byPeer    map[netip.AddrPort]*turnChannel
	byNumber  map[uint16]*turnChannel
	next      uint16    // next channel number to try
	lastOK    time.Time // last authenticated success from the relay

	// lost is the relayed address of an allocation reallocate gave up
	// on, until an allocation replaces it (a re-allocation may fail while
	// the relay is down; the next one, maybe by allocate, still replaces
	// it).
	lost netip.AddrPort
	// onReplaced, if set, is called (on its own goroutine, with no lock
	// held) when a lost allocation was replaced by one on another relayed
	// address: every ICE pair on the old address is dead. Set before the
	// allocation is first used.
	onReplaced func(old, now netip.AddrPort)
}

func newTURNAlloc(cfg turnAllocConfig) *turnAlloc {
	if cfg.rto <= 0 {
		cfg.rto = turnDefaultRTO
	}
	if cfg.timeout <= 0 {
		cfg.timeout = turnDefaultTimeout
	}
	if cfg.tick <= 0 {
		cfg.tick = 10 * time.Second
	}
	if cfg.log == nil {
		cfg.log = zap.NewNop()
	}
	cfg.relay.Addr = netip.AddrPortFrom(cfg.relay.Addr.Addr().Unmap(), cfg.relay.Addr.Port())
	return &turnAlloc{
		cfg:      cfg,
		log:      cfg.log,
		pending:  make(map[[stun.TransactionIDSize]byte]chan *stun.Message),
		byPeer:   make(map[netip.AddrPort]*turnChannel),
		byNumber: make(map[uint16]*turnChannel),
		next:     turnFirstChannel,
	}
}

// server is the relay's address (where requests and ChannelData go).
func (a *turnAlloc) server() netip.AddrPort { return a.cfg.relay.Addr }

// relayedAddr is the allocation's relayed address (invalid before allocate).
func (a *turnAlloc) relayedAddr() netip.AddrPort {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.relayed
}

// mappedAddr is our address as the relay saw it (XOR-MAPPED-ADDRESS).
func (a *turnAlloc) mappedAddr() netip.AddrPort {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mapped
}

// allocationLifetime is the lifetime of the last ALLOCATE/REFRESH answer.
func (a *turnAlloc) allocationLifetime() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lifetime
}

// allocate creates the allocation (UDP), authenticating with the relay's
// realm and nonce after its first 401. A relay that still holds an
// allocation on our 5-tuple answers 437 (Allocation Mismatch): that is our
// own from before a crash or restart of this process on the same port
// (nobody else sends from our address), so it is deleted (REFRESH with
// LIFETIME 0, authenticated) and the allocation retried once, as Firezone
// does (reference §2.5).
func (a *turnAlloc) allocate(ctx context.Context) error {
	err := a.allocateOnce(ctx)
	if !isAllocMismatch(err) {
		return err
	}
	a.log.Info("turn relay holds an old allocation on our address; deleting it", zap.Stringer("relay", a.server()))
	if derr := a.deleteRemote(ctx); derr != nil {
		return fmt.Errorf("%w (deleting the old allocation: %v)", err, derr)
	}
	return a.allocateOnce(ctx)
}

// allocateOnce sends one ALLOCATE transaction (with its 401/438 retries).
func (a *turnAlloc) allocateOnce(ctx context.Context) error {
	v6 := a.cfg.relay.Addr.Addr().Is6()
	res, err := a.do(ctx, stun.MethodAllocate, func(m *stun.Message) {
		m.Add(stun.AttrRequestedTransport, []byte{17, 0, 0, 0}) // UDP
		if v6 {
			// A relay reached over IPv6 relays for IPv6 peers: without
			// this the relayed address would be IPv4 (RFC 8656 §7.1).
			m.Add(stun.AttrRequestedAddressFamily, []byte{0x02, 0, 0, 0})
		}
	})
	if err != nil {
		return err
	}
	var relayed, mapped stun.XORMappedAddress
	if err := relayed.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
		return fmt.Errorf("snownet: turn allocate response: %w", err)
	}
	_ = mapped.GetFromAs(res, stun.AttrXORMappedAddress)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.relayed = udpAddrPort(relayed.IP, relayed.Port)
	if a.lost.IsValid() && a.lost != a.relayed && a.onReplaced != nil {
		go a.onReplaced(a.lost, a.relayed)
	}
	a.lost = netip.AddrPort{}
	if mapped.IP != nil {
		a.mapped = udpAddrPort(mapped.IP, mapped.Port)
	}
	a.lifetime = lifetimeOf(res)
	return nil
}

// deleteRemote deletes whatever allocation the relay holds on our 5-tuple
// (REFRESH with LIFETIME 0), whether or not we know its address.
func (a *turnAlloc) deleteRemote(ctx context.Context) error {
	_, err := a.do(ctx, stun.MethodRefresh, func(m *stun.Message) {
		m.Add(stun.AttrLifetime, []byte{0, 0, 0, 0})
	})
	return err
}

func isAllocMismatch(err error) bool {
	var te *TURNError
	return errors.As(err, &te) && te.Code == stun.CodeAllocMismatch
}

// refresh extends the allocation by lifetime (0 deletes it).
func (a *turnAlloc) refresh(ctx context.Context, lifetime time.Duration) error {
	if !a.relayedAddr().IsValid() {
		return ErrTURNNoAllocation
	}
	res, err := a.do(ctx, stun.MethodRefresh, func(m *stun.Message) {
		var v [4]byte
		binary.BigEndian.PutUint32(v[:], uint32(lifetime/time.Second))
		m.Add(stun.AttrLifetime, v[:])
	})
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if lifetime == 0 {
		a.relayed = netip.AddrPort{}
		clear(a.byPeer)
		clear(a.byNumber)
		return nil
	}
	a.lifetime = lifetimeOf(res)
	return nil
}

// bindChannel binds (or re-binds, which refreshes) a channel to peer and
// returns its number. A channel binding is also the peer's permission.
func (a *turnAlloc) bindChannel(ctx context.Context, peer netip.AddrPort) (uint16, error) {
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	a.mu.Lock()
	if !a.relayed.IsValid() {
		a.mu.Unlock()
		return 0, ErrTURNNoAllocation
	}
	ch := a.byPeer[peer]
	if ch == nil {
		n, ok := a.freeNumberLocked()
		if !ok {
			a.mu.Unlock()
			return 0, ErrTURNNoChannels
		}
		// Registered before the answer: the relay may forward data on
		// the channel as soon as it has bound it (optimistic, like
		// Firezone).
		ch = &turnChannel{number: n, peer: peer}
		a.byPeer[peer] = ch
		a.byNumber[n] = ch
	}
	number := ch.number
	a.mu.Unlock()
	_, err := a.do(ctx, stun.MethodChannelBind, func(m *stun.Message) {
		var v [4]byte
		binary.BigEndian.PutUint16(v[:2], number)
		m.Add(stun.AttrChannelNumber, v[:])
		xa := stun.XORMappedAddress{IP: peer.Addr().AsSlice(), Port: int(peer.Port())}
		_ = xa.AddToAs(m, stun.AttrXORPeerAddress)
	})
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		if cur := a.byNumber[number]; cur == ch && ch.boundAt.IsZero() {
			delete(a.byNumber, number)
			delete(a.byPeer, peer)
		}
		return 0, err
	}
	ch.boundAt = time.Now()
	return number, nil
}

func (a *turnAlloc) freeNumberLocked() (uint16, bool) {
	for i := 0; i <= turnLastChannel-turnFirstChannel; i++ {
		n := a.next
		a.next++
		if a.next > turnLastChannel {
			a.next = turnFirstChannel
		}
		if a.byNumber[n] == nil {
			return n, true
		}
	}
	return 0, false
}

// channelFor returns the channel bound (or being bound) to peer.
func (a *turnAlloc) channelFor(peer netip.AddrPort) (uint16, bool) {
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	a.mu.Lock()
	defer a.mu.Unlock()
	ch := a.byPeer[peer]
	if ch == nil {
		return 0, false
	}
	return ch.number, true
}

// peerFor returns the peer bound to channel number n.
func (a *turnAlloc) peerFor(n uint16) (netip.AddrPort, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch := a.byNumber[n]
	if ch == nil {
		return netip.AddrPort{}, false
	}
	return ch.peer, true
}

// channelsDue returns the peers whose channel was last bound more than
// turnChannelRefresh before now.
func (a *turnAlloc) channelsDue(now time.Time) []netip.AddrPort {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []netip.AddrPort
	for p, ch := range a.byPeer {
		if !ch.boundAt.IsZero() && now.Sub(ch.boundAt) >= turnChannelRefresh {
			out = append(out, p)
		}
	}
	return out
}

// turnKeepalive is how long the allocation may go without an answer from
// the relay before maintain checks it with a REFRESH (Firezone sends a
// BINDING every 25 s; a REFRESH also proves the allocation still exists).
const turnKeepalive = 25 * time.Second

// maintain keeps the allocation alive until ctx ends: REFRESH at half the
// lifetime (or after turnKeepalive of silence), channel re-binds every 5
// minutes. An allocation the relay lost (437, or no answer: a restarted
// relay may not answer requests for unknown allocations) is re-created
// with the same channel numbers.
func (a *turnAlloc) maintain(ctx context.Context) {
	t := time.NewTicker(a.cfg.tick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			lt := a.allocationLifetime()
			if lt > 0 && (now.Sub(last) >= lt/2 || now.Sub(a.lastSuccess()) >= turnKeepalive) {
				if err := a.check(ctx); err != nil {
					a.log.Debug("turn refresh failed", zap.Stringer("relay", a.server()), zap.Error(err))
				} else {
					last = now
				}
			}
			for _, p := range a.channelsDue(now) {
				if _, err := a.bindChannel(ctx, p); err != nil {
					a.log.Debug("turn channel refresh failed", zap.Stringer("peer", p), zap.Error(err))
				}
			}
		}
	}
}

// check refreshes the allocation and re-creates it if the relay lost it.
func (a *turnAlloc) check(ctx context.Context) error {
	err := a.refresh(ctx, a.allocationLifetime())
	if lostAllocation(err) {
		err = a.reallocate(ctx)
	}
	return err
}

// lostAllocation reports whether err means the relay no longer has our
// allocation.
func lostAllocation(err error) bool {
	var te *TURNError
	return errors.Is(err, ErrTURNTimeout) || (errors.As(err, &te) && te.Code == stun.CodeAllocMismatch)
}

func (a *turnAlloc) lastSuccess() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastOK
}

// reallocate creates a new allocation after the relay lost ours and binds
// the old channels' peers again on the same channel numbers (the Bind's
// data routes keep working).
func (a *turnAlloc) reallocate(ctx context.Context) error {
	a.mu.Lock()
	peers := make([]netip.AddrPort, 0, len(a.byPeer))
	for p := range a.byPeer {
		peers = append(peers, p)
	}
	old := a.relayed
	if old.IsValid() {
		a.lost = old
	}
	a.relayed = netip.AddrPort{}
	a.mu.Unlock()
	err := a.allocateOnce(ctx)
	if isAllocMismatch(err) && old.IsValid() {
		// The relay still has an allocation on our 5-tuple: ours (only
		// the check was lost), so keep it.
		a.mu.Lock()
		a.relayed, a.lost = old, netip.AddrPort{}
		a.mu.Unlock()
		return nil
	}
	if isAllocMismatch(err) {
		// After an earlier failed re-allocation the relay's allocation
		// may be that attempt's, on an address we never learnt: start
		// afresh.
		err = a.allocate(ctx)
	}
	if err != nil {
		return err
	}
	for _, p := range peers {
		if _, err := a.bindChannel(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// close deletes the allocation (best effort, one short try) and fails
// every request in flight.
func (a *turnAlloc) close() {
	if a.relayedAddr().IsValid() {
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.rto)
		_ = a.refresh(ctx, 0)
		cancel()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	for id, c := range a.pending {
		close(c)
		delete(a.pending, id)
	}
}

// handleSTUN takes a STUN message received from the relay. It reports
// whether it was the answer to one of our requests (the caller routes
// anything else elsewhere, e.g. to ICE). It never blocks.
func (a *turnAlloc) handleSTUN(p []byte) bool {
	if len(p) < stunHeaderSize || !isSTUN(p) {
		return false
	}
	var id [stun.TransactionIDSize]byte
	copy(id[:], p[8:stunHeaderSize])
	a.mu.Lock()
	c := a.pending[id]
	if c != nil {
		delete(a.pending, id)
	}
	a.mu.Unlock()
	if c == nil {
		return false
	}
	m := &stun.Message{Raw: append([]byte(nil), p...)}
	if err := m.Decode(); err != nil {
		// Ours by transaction id but unparsable: the request will time out.
		return true
	}
	c <- m // buffered, one per transaction
	return true
}

// do runs one request to completion: retransmissions with backoff, a retry
// with fresh credentials on 401 (first time) or 438 (stale nonce), and the
// integrity check of the success response.
func (a *turnAlloc) do(ctx context.Context, method stun.Method, attrs func(*stun.Message)) (*stun.Message, error) {
	for attempt := 0; attempt < 3; attempt++ {
		a.mu.Lock()
		hadAuth := a.integrity != nil
		realm, nonce, integ := a.realm, a.nonce, a.integrity
		a.mu.Unlock()

		m := stun.New()
		m.TransactionID = stun.NewTransactionID()
		m.Type = stun.NewType(method, stun.ClassRequest)
		m.WriteHeader()
		attrs(m)
		m.Add(stun.AttrSoftware, []byte(turnSoftware))
		if hadAuth {
			m.Add(stun.AttrUsername, []byte(a.cfg.relay.Username))
			m.Add(stun.AttrRealm, []byte(realm))
			m.Add(stun.AttrNonce, []byte(nonce))
			if err := integ.AddTo(m); err != nil {
				return nil, err
			}
		}
		res, err := a.transact(ctx, m)
		if err != nil {
			return nil, err
		}
		if res.Type.Class == stun.ClassSuccessResponse {
			if !hadAuth || integ.Check(res) != nil {
				return nil, ErrTURNIntegrity
			}
			a.mu.Lock()
			a.lastOK = time.Now()
			a.mu.Unlock()
			return res, nil
		}
		var ec stun.ErrorCodeAttribute
		if err := ec.GetFrom(res); err != nil {
			return nil, fmt.Errorf("snownet: turn %s error response without code: %w", method, err)
		}
		switch ec.Code {
		case stun.CodeUnauthorized, stun.CodeStaleNonce:
			if ec.Code == stun.CodeUnauthorized && hadAuth && nonce == nonceOf(res) {
				return nil, ErrTURNUnauthorized
			}
			if err := a.learnAuth(res); err != nil {
				return nil, err
			}
			continue
		}
		return nil, &TURNError{Method: method, Code: ec.Code, Reason: string(ec.Reason)}
	}
	return nil, ErrTURNUnauthorized
}

// learnAuth takes REALM and NONCE from a 401/438 response.
func (a *turnAlloc) learnAuth(res *stun.Message) error {
	realm, _ := res.Get(stun.AttrRealm)
	nonce := nonceOf(res)
	if nonce == "" {
		return fmt.Errorf("snownet: turn 401 without nonce: %w", ErrTURNUnauthorized)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	r := string(realm)
	if r == "" {
		r = a.realm
	}
	if want := a.cfg.relay.Realm; want != "" && r != want {
		return ErrTURNRealm
	}
	if r != a.realm || a.integrity == nil {
		a.realm = r
		a.integrity = stun.NewLongTermIntegrity(a.cfg.relay.Username, r, a.cfg.relay.Password)
	}
	a.nonce = nonce
	return nil
}

func nonceOf(m *stun.Message) string {
	v, _ := m.Get(stun.AttrNonce)
	return string(v)
}

// transact sends m and waits for its answer, retransmitting on the
// backoff schedule until the timeout.
func (a *turnAlloc) transact(ctx context.Context, m *stun.Message) (*stun.Message, error) {
	c := make(chan *stun.Message, 1)
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil, ErrTURNClosed
	}
	a.pending[m.TransactionID] = c
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		if a.pending[m.TransactionID] == c {
			delete(a.pending, m.TransactionID)
		}
		a.mu.Unlock()
	}()
	deadline := time.NewTimer(a.cfg.timeout)
	defer deadline.Stop()
	rto := a.cfg.rto
	for {
		if err := a.cfg.send(m.Raw, a.server()); err != nil && !isClosedErr(err) {
			a.log.Debug("turn send failed", zap.Error(err))
		}
		rtx := time.NewTimer(rto)
		select {
		case res, ok := <-c:
			rtx.Stop()
			if !ok {
				return nil, ErrTURNClosed
			}
			return res, nil
		case <-rtx.C:
			rto = time.Duration(float64(rto) * turnRTOMultiplier)
		case <-deadline.C:
			rtx.Stop()
			return nil, ErrTURNTimeout
		case <-ctx.Done():
			rtx.Stop()
			return nil, ctx.Err()
		}
	}
}

func lifetimeOf(m *stun.Message) time.Duration {
	v, err := m.Get(stun.AttrLifetime)
	if err != nil || len(v) != 4 {
		return 10 * time.Minute // RFC 8656 default
	}
	return time.Duration(binary.BigEndian.Uint32(v)) * time.Second
}

func udpAddrPort(ip net.IP, port int) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}
