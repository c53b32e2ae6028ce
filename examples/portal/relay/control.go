package relay

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"time"

	"github.com/pion/stun/v2"
	"go.uber.org/zap"
)

// The control plane: STUN/TURN requests and indications on the listen
// socket, handled inline by its reader goroutine (they are rare next to
// ChannelData). Messages are decoded and built with pion/stun.

const (
	software    = "gozone-relay"
	magicCookie = 0x2112A442
)

// knownAttrs are the comprehension-required attributes (< 0x8000) this
// relay understands; a request carrying any other gets 420. EVEN-PORT,
// DONT-FRAGMENT and RESERVATION-TOKEN are deliberately absent, as in
// Firezone's relay.
var knownAttrs = map[stun.AttrType]bool{
	stun.AttrMappedAddress: true, stun.AttrUsername: true, stun.AttrMessageIntegrity: true,
	stun.AttrErrorCode: true, stun.AttrUnknownAttributes: true, stun.AttrRealm: true, stun.AttrNonce: true,
	stun.AttrXORMappedAddress: true, stun.AttrChannelNumber: true, stun.AttrLifetime: true,
	stun.AttrXORPeerAddress: true, stun.AttrData: true, stun.AttrXORRelayedAddress: true,
	stun.AttrRequestedAddressFamily: true, stun.AttrRequestedTransport: true,
}

// handleSTUN handles one STUN message from a client. p aliases the
// reader's buffer and is not kept.
func (s *Server) handleSTUN(p []byte, from netip.AddrPort) {
	m := &stun.Message{Raw: p}
	if err := m.Decode(); err != nil {
		s.dropped.Add(1)
		return
	}
	now := s.cfg.Now()
	switch m.Type.Class {
	case stun.ClassRequest:
	case stun.ClassIndication:
		if m.Type.Method == stun.MethodSend {
			s.handleSend(m, from, now)
			return
		}
		s.dropped.Add(1)
		return
	default:
		s.dropped.Add(1)
		return
	}
	var unknown stun.UnknownAttributes
	for _, a := range m.Attributes {
		if a.Type < 0x8000 && !knownAttrs[a.Type] {
			unknown = append(unknown, a.Type)
		}
	}
	if len(unknown) > 0 {
		s.replyError(m, from, nil, stun.CodeUnknownAttribute, "", unknown)
		return
	}
	switch m.Type.Method {
	case stun.MethodBinding:
		s.reply(m, from, nil, stun.ClassSuccessResponse, xorAddr{stun.AttrXORMappedAddress, from})
	case stun.MethodAllocate:
		s.handleAllocate(m, from, now)
	case stun.MethodRefresh:
		s.handleRefresh(m, from, now)
	case stun.MethodCreatePermission:
		s.handleCreatePermission(m, from, now)
	case stun.MethodChannelBind:
		s.handleChannelBind(m, from, now)
	default:
		s.replyError(m, from, nil, stun.CodeBadRequest, "unsupported method")
	}
}

func (s *Server) handleAllocate(m *stun.Message, from netip.AddrPort, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	// A retransmitted ALLOCATE gets the first answer again (RFC 8656 §7.2).
	if a := s.byClient[from]; a != nil && a.allocTxID == m.TransactionID {
		s.send(a.allocRes, from)
		return
	}
	key, user, ok := s.authenticate(m, from, now)
	if !ok {
		return
	}
	if s.byClient[from] != nil {
		s.replyError(m, from, key, stun.CodeAllocMismatch, "")
		return
	}
	rt, err := m.Get(stun.AttrRequestedTransport)
	if err != nil || len(rt) != 4 {
		s.replyError(m, from, key, stun.CodeBadRequest, "REQUESTED-TRANSPORT missing")
		return
	}
	if rt[0] != 17 {
		s.replyError(m, from, key, stun.CodeUnsupportedTransProto, "")
		return
	}
	if fam, err := m.Get(stun.AttrRequestedAddressFamily); err == nil {
		if len(fam) != 4 || (fam[0] == 0x02) != s.public.Is6() {
			s.replyError(m, from, key, stun.CodeAddrFamilyNotSupported, "")
			return
		}
	}
	lifetime := clampLifetime(m)
	if lifetime == 0 {
		lifetime = DefaultAllocationLifetime
	}
	if s.cfg.OneAllocationPerUser {
		if old := s.byUser[user]; old != nil {
			s.cfg.Logger.Debug("relay replaces the older allocation of the same username",
				zap.Stringer("old", old.client), zap.Stringer("new", from))
			s.removeLocked(old)
		}
	}
	sk, port, err := s.openRelaySocket()
	if err != nil {
		s.cfg.Logger.Warn("relay out of allocation ports", zap.Error(err))
		s.replyError(m, from, key, stun.CodeInsufficientCapacity, "")
		return
	}
	relayed := netip.AddrPortFrom(s.public, port)
	a := newAllocation(from, relayed, sk, user, now.Add(lifetime))
	res, err := s.build(m, key, stun.ClassSuccessResponse,
		xorAddr{stun.AttrXORRelayedAddress, relayed}, lifetimeAttr(lifetime), xorAddr{stun.AttrXORMappedAddress, from})
	if err != nil {
		sk.conn.Close()
		return
	}
	a.allocTxID = m.TransactionID
	a.allocRes = res
	s.addLocked(a)
	s.cfg.Logger.Debug("relay allocation", zap.Stringer("client", from), zap.Stringer("relayed", relayed),
		zap.Duration("lifetime", lifetime))
	s.send(res, from)
}

// clampLifetime is the requested LIFETIME limited to the maximum; absent
// means 0 here (callers choose the default), and values under the default
// are raised to it, except 0 (a delete on REFRESH).
func clampLifetime(m *stun.Message) time.Duration {
	v, err := m.Get(stun.AttrLifetime)
	if err != nil || len(v) != 4 {
		return 0
	}
	d := time.Duration(binary.BigEndian.Uint32(v)) * time.Second
	switch {
	case d == 0:
		return -1
	case d < DefaultAllocationLifetime:
		return DefaultAllocationLifetime
	case d > MaxAllocationLifetime:
		return MaxAllocationLifetime
	}
	return d
}

func (s *Server) handleRefresh(m *stun.Message, from netip.AddrPort, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, key, ok := s.allocationOf(m, from, now)
	if !ok {
		return
	}
	lifetime := clampLifetime(m)
	switch lifetime {
	case -1:
		s.removeLocked(a)
		lifetime = 0
	case 0:
		lifetime = DefaultAllocationLifetime
		fallthrough
	default:
		a.expires = now.Add(lifetime)
	}
	s.reply(m, from, key, stun.ClassSuccessResponse, lifetimeAttr(lifetime))
}

func (s *Server) handleCreatePermission(m *stun.Message, from netip.AddrPort, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, key, ok := s.allocationOf(m, from, now)
	if !ok {
		return
	}
	var peers []netip.Addr
	for _, at := range m.Attributes {
		if at.Type != stun.AttrXORPeerAddress {
			continue
		}
		p, ok := s.peerOf(m, from, key, at.Value)
		if !ok {
			return
		}
		peers = append(peers, p.Addr())
	}
	if len(peers) == 0 {
		s.replyError(m, from, key, stun.CodeBadRequest, "XOR-PEER-ADDRESS missing")
		return
	}
	for _, ip := range peers {
		a.permit(ip, now)
	}
	s.reply(m, from, key, stun.ClassSuccessResponse)
}

func (s *Server) handleChannelBind(m *stun.Message, from netip.AddrPort, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, key, ok := s.allocationOf(m, from, now)
	if !ok {
		return
	}
	cn, err := m.Get(stun.AttrChannelNumber)
	if err != nil || len(cn) != 4 {
		s.replyError(m, from, key, stun.CodeBadRequest, "CHANNEL-NUMBER missing")
		return
	}
	num := binary.BigEndian.Uint16(cn)
	if num < minChannel || num > maxChannel {
		s.replyError(m, from, key, stun.CodeBadRequest, "channel number out of range")
		return
	}
	pa, _ := m.Get(stun.AttrXORPeerAddress) // missing: nil, refused by peerOf
	peer, ok := s.peerOf(m, from, key, pa)
	if !ok {
		return
	}
	if err := a.bind(num, peer, now); err != nil {
		s.replyError(m, from, key, stun.CodeBadRequest, err.Error())
		return
	}
	s.reply(m, from, key, stun.ClassSuccessResponse)
}

// allocationOf authenticates the request m from a client and returns the
// client's allocation and the key to sign the answer with. When it returns
// ok false it has answered m itself (401/438 from authenticate, 437 when
// from has no allocation). The caller holds s.mu.
func (s *Server) allocationOf(m *stun.Message, from netip.AddrPort, now time.Time) (a *allocation, key stun.MessageIntegrity, ok bool) {
	key, _, ok = s.authenticate(m, from, now)
	if !ok {
		return nil, nil, false
	}
	if a = s.byClient[from]; a == nil {
		s.replyError(m, from, key, stun.CodeAllocMismatch, "")
		return nil, nil, false
	}
	return a, key, true
}

// peerOf decodes the XOR-PEER-ADDRESS value v of the request m. A missing
// or undecodable one is answered 400, a peer of the other address family
// than the relayed addresses 443; ok is false then.
func (s *Server) peerOf(m *stun.Message, from netip.AddrPort, key stun.MessageIntegrity, v []byte) (peer netip.AddrPort, ok bool) {
	peer, ok = decodeXORAddr(v, m.TransactionID)
	if !ok {
		s.replyError(m, from, key, stun.CodeBadRequest, "bad or missing XOR-PEER-ADDRESS")
		return peer, false
	}
	if peer.Addr().Is6() != s.public.Is6() {
		s.replyError(m, from, key, stun.CodePeerAddrFamilyMismatch, "")
		return peer, false
	}
	return peer, true
}

// handleSend relays a Send indication's DATA to its peer if the
// allocation has a permission for it; indications are never answered.
func (s *Server) handleSend(m *stun.Message, from netip.AddrPort, now time.Time) {
	a := (*s.clients.Load())[from]
	pa, err1 := m.Get(stun.AttrXORPeerAddress)
	data, err2 := m.Get(stun.AttrData)
	peer, ok := decodeXORAddr(pa, m.TransactionID)
	if a == nil || err1 != nil || err2 != nil || !ok || !a.permitted(peer.Addr(), now) {
		s.dropped.Add(1)
		return
	}
	if _, err := a.sock.conn.WriteToUDPAddrPort(data, peer); err != nil {
		s.dropped.Add(1)
		return
	}
	s.indications.Add(1)
}

// sendData wraps a peer's datagram into a Data indication (no channel to
// that peer, but a permission).
func (s *Server) sendData(a *allocation, peer netip.AddrPort, data []byte) {
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodData, stun.ClassIndication),
		xorAddr{stun.AttrXORPeerAddress, peer}, stun.RawAttribute{Type: stun.AttrData, Value: data})
	if err != nil {
		s.dropped.Add(1)
		return
	}
	s.send(m.Raw, a.client)
	s.indications.Add(1)
}

// build makes a response to req, signed with key when it is not nil.
func (s *Server) build(req *stun.Message, key stun.MessageIntegrity, class stun.MessageClass, attrs ...stun.Setter) ([]byte, error) {
	setters := make([]stun.Setter, 0, len(attrs)+5)
	setters = append(setters, stun.NewTransactionIDSetter(req.TransactionID), stun.NewType(req.Type.Method, class))
	setters = append(setters, attrs...)
	setters = append(setters, stun.NewSoftware(software))
	if key != nil {
		setters = append(setters, key)
	}
	setters = append(setters, stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		return nil, err
	}
	return m.Raw, nil
}

func (s *Server) reply(req *stun.Message, to netip.AddrPort, key stun.MessageIntegrity, class stun.MessageClass, attrs ...stun.Setter) {
	if b, err := s.build(req, key, class, attrs...); err == nil {
		s.send(b, to)
	}
}

func (s *Server) replyError(req *stun.Message, to netip.AddrPort, key stun.MessageIntegrity, code stun.ErrorCode, reason string, attrs ...stun.Setter) {
	ec := &stun.ErrorCodeAttribute{Code: code, Reason: []byte(reason)}
	if reason == "" {
		ec.Reason = []byte(strconv.Itoa(int(code)))
		if r, ok := errorReasons[code]; ok {
			ec.Reason = []byte(r)
		}
	}
	s.reply(req, to, key, stun.ClassErrorResponse, append([]stun.Setter{ec}, attrs...)...)
}

var errorReasons = map[stun.ErrorCode]string{
	stun.CodeBadRequest: "Bad Request", stun.CodeUnauthorized: "Unauthorized", stun.CodeUnknownAttribute: "Unknown Attribute",
	stun.CodeStaleNonce: "Stale Nonce", stun.CodeAllocMismatch: "Allocation Mismatch",
	stun.CodeUnsupportedTransProto: "Unsupported Transport Protocol", stun.CodeInsufficientCapacity: "Insufficient Capacity",
	stun.CodeAddrFamilyNotSupported: "Address Family not Supported", stun.CodePeerAddrFamilyMismatch: "Peer Address Family Mismatch",
}

func (s *Server) send(b []byte, to netip.AddrPort) {
	if _, err := s.main.conn.WriteToUDPAddrPort(b, to); err != nil && !isClosed(err) {
		s.cfg.Logger.Debug("relay send failed", zap.Stringer("to", to), zap.Error(err))
	}
}

// xorAddr is an XOR-*-ADDRESS attribute setter.
type xorAddr struct {
	t  stun.AttrType
	ap netip.AddrPort
}

func (x xorAddr) AddTo(m *stun.Message) error {
	xa := stun.XORMappedAddress{IP: x.ap.Addr().Unmap().AsSlice(), Port: int(x.ap.Port())}
	return xa.AddToAs(m, x.t)
}

type lifetimeAttr time.Duration

func (l lifetimeAttr) AddTo(m *stun.Message) error {
	var v [4]byte
	binary.BigEndian.PutUint32(v[:], uint32(time.Duration(l)/time.Second))
	m.Add(stun.AttrLifetime, v[:])
	return nil
}

// decodeXORAddr decodes an XOR-*-ADDRESS value (RFC 8489 §14.2); it
// allocates nothing and never panics.
func decodeXORAddr(v []byte, txid [stun.TransactionIDSize]byte) (netip.AddrPort, bool) {
	if len(v) < 4 {
		return netip.AddrPort{}, false
	}
	port := binary.BigEndian.Uint16(v[2:4]) ^ uint16(magicCookie>>16)
	var cookie [4]byte
	binary.BigEndian.PutUint32(cookie[:], magicCookie)
	switch v[1] {
	case 0x01:
		if len(v) != 8 {
			return netip.AddrPort{}, false
		}
		var ip [4]byte
		for i := range ip {
			ip[i] = v[4+i] ^ cookie[i]
		}
		return netip.AddrPortFrom(netip.AddrFrom4(ip), port), true
	case 0x02:
		if len(v) != 20 {
			return netip.AddrPort{}, false
		}
		var ip [16]byte
		for i := range ip {
			k := cookie[i%4]
			if i >= 4 {
				k = txid[i-4]
			}
			ip[i] = v[4+i] ^ k
		}
		return netip.AddrPortFrom(netip.AddrFrom16(ip).Unmap(), port), true
	}
	return netip.AddrPort{}, false
}
