package relay

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v2"
)

// atomicClock is a settable clock safe for the relay's goroutines.
type atomicClock struct{ ns atomic.Int64 }

func newAtomicClock(t time.Time) *atomicClock {
	c := &atomicClock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *atomicClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *atomicClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func startRelayCfg(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:0"
	}
	if cfg.MinPort == 0 {
		cfg.MinPort, cfg.MaxPort = 41000, 48999
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func listenPeer(t testing.TB) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// readFrom reads one datagram within 5 s.
func readFrom(t testing.TB, c *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
}

// waitFor polls cond for up to 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// waitStats waits until s's counters satisfy ok. The data plane adds its
// counts after a batch is sent, so a receiver can see a packet a moment
// before it is counted.
func waitStats(t testing.TB, s *Server, ok func(Stats) bool) {
	t.Helper()
	var st Stats
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if st = s.Stats(); ok(st) {
			return
		}
	}
	t.Fatalf("relay stats %+v never matched", st)
}

func TestAuthChallengeStaleNonceAndWrongPassword(t *testing.T) {
	clock := newAtomicClock(time.Unix(2000000000, 0))
	s := startRelayCfg(t, Config{Now: clock.now})
	user, pass := s.Credentials(testKey, clock.now().Add(24*time.Hour).Unix())
	c := newRawClient(t, s.Addr(), user, pass)

	// Unauthenticated: 401 with realm firezone and a nonce.
	res := c.roundTrip(c.request(stun.MethodAllocate, false, requestedUDP()))
	if errCode(res) != stun.CodeUnauthorized || attrString(res, stun.AttrRealm) != Realm || attrString(res, stun.AttrNonce) == "" {
		t.Fatalf("challenge: code %d realm %q nonce %q", errCode(res), attrString(res, stun.AttrRealm), attrString(res, stun.AttrNonce))
	}
	c.learn(res)
	relayed := c.allocate()
	if !relayed.Addr().IsLoopback() || relayed.Port() < 41000 || relayed.Port() > 48999 {
		t.Fatalf("relayed %v", relayed)
	}

	// The nonce goes stale: 438 with a fresh one, which then works.
	clock.advance(NonceLifetime + time.Second)
	old := c.nonce
	res = c.roundTrip(c.request(stun.MethodRefresh, true))
	if errCode(res) != stun.CodeStaleNonce || attrString(res, stun.AttrNonce) == old {
		t.Fatalf("stale nonce: code %d", errCode(res))
	}
	c.learn(res)
	res = c.roundTrip(c.request(stun.MethodRefresh, true))
	mustSucceed(t, "refresh with the fresh nonce", res)
	if err := c.key.Check(res); err != nil {
		t.Fatalf("response not signed: %v", err)
	}

	// A nonce given to another socket is not accepted from this one.
	other := newRawClient(t, s.Addr(), user, pass)
	other.realm, other.nonce, other.key = c.realm, c.nonce, c.key
	if code := errCode(other.roundTrip(other.request(stun.MethodAllocate, true, requestedUDP()))); code != stun.CodeStaleNonce {
		t.Fatalf("foreign nonce: code %d", code)
	}

	// A wrong password: 401 repeating the (valid) nonce, counted.
	refused := s.Refused()
	bad := newRawClient(t, s.Addr(), user, pass+"x")
	res = bad.do(stun.MethodAllocate, requestedUDP())
	if errCode(res) != stun.CodeUnauthorized || attrString(res, stun.AttrNonce) != bad.nonce {
		t.Fatalf("wrong password: code %d", errCode(res))
	}
	if s.Refused() <= refused {
		t.Fatal("wrong password not counted as refused")
	}
	// Missing USERNAME with MESSAGE-INTEGRITY: 400.
	m, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedUDP(),
		stun.NewRealm(Realm), stun.NewNonce(c.nonce), c.key)
	if code := errCode(c.roundTrip(m)); code != stun.CodeBadRequest {
		t.Fatalf("no username: code %d", code)
	}
	if s.AllocationCount() != 1 {
		t.Fatalf("allocations %d", s.AllocationCount())
	}
}

func TestAllocateRetransmitMismatchAndRefreshDelete(t *testing.T) {
	s := startRelayCfg(t, Config{})
	user, pass := s.Credentials(testKey, time.Now().Add(time.Hour).Unix())
	c := newRawClient(t, s.Addr(), user, pass)
	c.learn(c.roundTrip(c.request(stun.MethodAllocate, false, requestedUDP())))
	req := c.request(stun.MethodAllocate, true, requestedUDP())
	first := c.roundTrip(req)
	mustSucceed(t, "allocate", first)
	again := c.roundTrip(req) // a retransmission: the same answer
	if !bytes.Equal(first.Raw, again.Raw) {
		t.Fatal("retransmitted ALLOCATE got a different answer")
	}
	if code := errCode(c.do(stun.MethodAllocate, requestedUDP())); code != stun.CodeAllocMismatch {
		t.Fatalf("second allocate: code %d", code)
	}
	var lt [4]byte
	binary.BigEndian.PutUint32(lt[:], 7200)
	res := c.do(stun.MethodRefresh, stun.RawAttribute{Type: stun.AttrLifetime, Value: lt[:]})
	mustSucceed(t, "refresh", res)
	if v, _ := res.Get(stun.AttrLifetime); binary.BigEndian.Uint32(v) != 3600 {
		t.Fatalf("lifetime not clamped to 3600: %v", v)
	}
	res = c.do(stun.MethodRefresh, stun.RawAttribute{Type: stun.AttrLifetime, Value: []byte{0, 0, 0, 0}})
	mustSucceed(t, "refresh 0", res)
	if s.AllocationCount() != 0 {
		t.Fatalf("allocations after delete %d", s.AllocationCount())
	}
	if code := errCode(c.do(stun.MethodRefresh)); code != stun.CodeAllocMismatch {
		t.Fatalf("refresh without allocation: code %d", code)
	}
	// Other requests: unsupported transport, unknown attribute, unknown method.
	if code := errCode(c.do(stun.MethodAllocate, stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{6, 0, 0, 0}})); code != stun.CodeUnsupportedTransProto {
		t.Fatalf("tcp allocate: code %d", code)
	}
	if code := errCode(c.do(stun.MethodAllocate, requestedUDP(), stun.RawAttribute{Type: stun.AttrEvenPort, Value: []byte{0x80, 0, 0, 0}})); code != stun.CodeUnknownAttribute {
		t.Fatalf("EVEN-PORT: code %d", code)
	}
	if code := errCode(c.do(stun.MethodConnect)); code != stun.CodeBadRequest {
		t.Fatalf("CONNECT: code %d", code)
	}
	// Binding needs no credentials.
	b := newRawClient(t, s.Addr(), "", "")
	res = b.roundTrip(b.request(stun.MethodBinding, false))
	var xa stun.XORMappedAddress
	if err := xa.GetFrom(res); err != nil || xa.Port != int(b.addr().Port()) {
		t.Fatalf("binding: %v %v", xa, err)
	}
}

// TestChannelsIndicationsAndExpiry: ChannelData both ways, Send and Data
// indications, channel-bind rules, then expiry of channels (with the
// rebind cooldown) and of the allocation on the relay's clock.
func TestChannelsIndicationsAndExpiry(t *testing.T) {
	clock := newAtomicClock(time.Now())
	s := startRelayCfg(t, Config{Now: clock.now})
	user, pass := s.Credentials(testKey, time.Now().Add(48*time.Hour).Unix())
	c := newRawClient(t, s.Addr(), user, pass)
	relayed := c.allocate()
	peer, peerAddr := listenPeer(t)
	peer2, peer2Addr := listenPeer(t)

	// No permission yet: the peer's datagram is dropped.
	dropped := s.Dropped()
	if _, err := peer.WriteToUDPAddrPort([]byte("early"), relayed); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "drop of an unpermitted peer", func() bool { return s.Dropped() > dropped })

	// CreatePermission, then Send indication → peer, peer → Data indication.
	mustSucceed(t, "permission", c.do(stun.MethodCreatePermission, xorAddr{stun.AttrXORPeerAddress, peerAddr}))
	send, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		xorAddr{stun.AttrXORPeerAddress, peerAddr}, stun.RawAttribute{Type: stun.AttrData, Value: []byte("via send")})
	if _, err := c.conn.WriteToUDPAddrPort(send.Raw, s.Addr()); err != nil {
		t.Fatal(err)
	}
	if got, from := readFrom(t, peer); string(got) != "via send" || from != relayed {
		t.Fatalf("peer got %q from %v", got, from)
	}
	if _, err := peer.WriteToUDPAddrPort([]byte("via data"), relayed); err != nil {
		t.Fatal(err)
	}
	got, _ := readFrom(t, c.conn)
	di := &stun.Message{Raw: got}
	if err := di.Decode(); err != nil || di.Type != stun.NewType(stun.MethodData, stun.ClassIndication) {
		t.Fatalf("expected a Data indication: %v %v", di.Type, err)
	}
	if d, _ := di.Get(stun.AttrData); string(d) != "via data" {
		t.Fatalf("data %q", d)
	}
	pa, _ := di.Get(stun.AttrXORPeerAddress)
	if p, ok := decodeXORAddr(pa, di.TransactionID); !ok || p != peerAddr {
		t.Fatalf("peer address %v", p)
	}

	// Channel binding rules.
	mustSucceed(t, "bind", c.channelBind(0x4001, peerAddr))
	mustSucceed(t, "rebind (refresh)", c.channelBind(0x4001, peerAddr))
	for _, bad := range []struct {
		num  uint16
		peer netip.AddrPort
		code stun.ErrorCode
	}{
		{0x3FFF, peer2Addr, stun.CodeBadRequest},
		{0x8000, peer2Addr, stun.CodeBadRequest},
		{0x4001, peer2Addr, stun.CodeBadRequest}, // number taken
		{0x4002, peerAddr, stun.CodeBadRequest},  // peer has a channel
		{0x4003, netip.MustParseAddrPort("[::1]:5000"), stun.CodePeerAddrFamilyMismatch},
	} {
		if code := errCode(c.channelBind(bad.num, bad.peer)); code != bad.code {
			t.Errorf("bind %#x → %v: code %d, want %d", bad.num, bad.peer, code, bad.code)
		}
	}

	// ChannelData both ways.
	cd := binary.BigEndian.AppendUint16(nil, 0x4001)
	cd = binary.BigEndian.AppendUint16(cd, 5)
	cd = append(cd, "hello"...)
	if _, err := c.conn.WriteToUDPAddrPort(cd, s.Addr()); err != nil {
		t.Fatal(err)
	}
	if got, from := readFrom(t, peer); string(got) != "hello" || from != relayed {
		t.Fatalf("peer got %q from %v", got, from)
	}
	if _, err := peer.WriteToUDPAddrPort([]byte("world!"), relayed); err != nil {
		t.Fatal(err)
	}
	got, _ = readFrom(t, c.conn)
	if !bytes.Equal(got, append([]byte{0x40, 0x01, 0, 6}, "world!"...)) {
		t.Fatalf("client got %x", got)
	}
	waitStats(t, s, func(st Stats) bool { return st.ToPeers == 1 && st.ToClients == 1 && st.Indications == 2 })

	// Keep the allocation, let the channel expire: ChannelData is dropped,
	// the number stays reserved for its old peer during the cooldown.
	var lt [4]byte
	binary.BigEndian.PutUint32(lt[:], 3600)
	mustSucceed(t, "refresh", c.do(stun.MethodRefresh, stun.RawAttribute{Type: stun.AttrLifetime, Value: lt[:]}))
	clock.advance(ChannelLifetime + time.Second)
	waitFor(t, "channel expiry", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		a := s.byClient[c.addr()]
		return a != nil && len(a.bindings) == 0
	})
	dropped = s.Dropped()
	if _, err := c.conn.WriteToUDPAddrPort(cd, s.Addr()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "drop on an expired channel", func() bool { return s.Dropped() > dropped })
	if code := errCode(c.channelBind(0x4001, peer2Addr)); code != stun.CodeBadRequest {
		t.Fatalf("rebind during cooldown: code %d", code)
	}
	mustSucceed(t, "rebind to the same peer during cooldown", c.channelBind(0x4001, peerAddr))
	_ = peer2

	// The allocation expires on the relay's clock.
	clock.advance(MaxAllocationLifetime + time.Second)
	waitFor(t, "allocation expiry", func() bool { return s.AllocationCount() == 0 })
	if code := errCode(c.do(stun.MethodRefresh)); code != stun.CodeAllocMismatch {
		t.Fatalf("refresh after expiry: code %d", code)
	}
}

func TestOneAllocationPerUser(t *testing.T) {
	s := startRelayCfg(t, Config{OneAllocationPerUser: true})
	user, pass := s.Credentials(testKey, time.Now().Add(time.Hour).Unix())
	a := newRawClient(t, s.Addr(), user, pass)
	a.allocate()
	b := newRawClient(t, s.Addr(), user, pass)
	b.allocate()
	if s.AllocationCount() != 1 {
		t.Fatalf("allocations %d", s.AllocationCount())
	}
	if code := errCode(a.do(stun.MethodRefresh)); code != stun.CodeAllocMismatch {
		t.Fatalf("the older allocation still answers: code %d", code)
	}
	// Without the option both live.
	s2 := startRelayCfg(t, Config{Secret: s.Secret()})
	newRawClient(t, s2.Addr(), user, pass).allocate()
	newRawClient(t, s2.Addr(), user, pass).allocate()
	if s2.AllocationCount() != 2 {
		t.Fatalf("allocations %d", s2.AllocationCount())
	}
}

func TestGarbageIsDroppedAndCounted(t *testing.T) {
	s := startRelayCfg(t, Config{})
	c, _ := listenPeer(t)
	garbage := [][]byte{
		{}, {0x40}, {0x40, 0x00, 0x00, 0x10, 1, 2}, // ChannelData from a stranger
		[]byte("not a packet at all"),
		append([]byte{0, 1, 0, 4, 0x21, 0x12, 0xA4, 0x42}, make([]byte, 12)...),       // STUN length beyond the datagram
		append([]byte{0x01, 0x11, 0, 0, 0x21, 0x12, 0xA4, 0x42}, make([]byte, 12)...), // a response class from a client
	}
	for _, g := range garbage {
		if _, err := c.WriteToUDPAddrPort(g, s.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	// The empty datagram is read but is neither STUN nor ChannelData, so
	// every one counts.
	waitFor(t, "drops", func() bool { return s.Dropped() >= uint64(len(garbage)) })
	user, pass := s.Credentials(testKey, time.Now().Add(time.Hour).Unix())
	newRawClient(t, s.Addr(), user, pass).allocate() // still serving
}
