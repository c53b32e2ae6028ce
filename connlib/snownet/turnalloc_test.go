package snownet

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v2"
)

// sharedSock is a loopback UDP socket standing in for the Bind's shared
// socket: STUN from the relay goes to the allocation, ChannelData to a
// channel the test reads.
type sharedSock struct {
	pc    *net.UDPConn
	alloc *turnAlloc
	data  chan []byte // ChannelData frames received
}

func newSharedSock(t *testing.T, relay Relay, mod func(*turnAllocConfig)) *sharedSock {
	t.Helper()
	return newSharedSockOn(t, "udp4", net.IPv4(127, 0, 0, 1), relay, mod)
}

// newSharedSockOn is newSharedSock on a given network and loopback IP.
func newSharedSockOn(t *testing.T, network string, ip net.IP, relay Relay, mod func(*turnAllocConfig)) *sharedSock {
	t.Helper()
	pc, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	s := &sharedSock{pc: pc, data: make(chan []byte, 16)}
	cfg := turnAllocConfig{
		relay: relay,
		send: func(p []byte, to netip.AddrPort) error {
			_, err := pc.WriteToUDPAddrPort(p, to)
			return err
		},
		rto: 200 * time.Millisecond,
		log: testLogger(t),
	}
	if mod != nil {
		mod(&cfg)
	}
	s.alloc = newTURNAlloc(cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, _, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			p := buf[:n]
			switch Classify(p) {
			case KindSTUN:
				s.alloc.handleSTUN(p)
			case KindChannelData:
				select {
				case s.data <- append([]byte(nil), p...):
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		s.alloc.close()
		_ = pc.Close()
		<-done
	})
	return s
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestTURNAllocChannelDataRoundTrip(t *testing.T) {
	srv := startTURN(t)
	s := newSharedSock(t, testRelay(srv), nil)
	ctx := ctxT(t, 20*time.Second)
	if err := s.alloc.allocate(ctx); err != nil {
		t.Fatalf("allocate: %v", err)
	}
	relayed := s.alloc.relayedAddr()
	if !relayed.IsValid() || !relayed.Addr().IsLoopback() || relayed.Port() == srv.Port() {
		t.Fatalf("relayed address %v", relayed)
	}
	if got, want := s.alloc.mappedAddr(), s.pc.LocalAddr().(*net.UDPAddr).AddrPort(); got != want {
		t.Fatalf("mapped address %v, want %v", got, want)
	}
	if s.alloc.allocationLifetime() <= 0 {
		t.Fatal("no lifetime")
	}

	peer, peerAddr, ch := s.boundPeer(t, ctx, "udp4", net.IPv4(127, 0, 0, 1))
	if ch < turnFirstChannel || ch > turnLastChannel {
		t.Fatalf("channel number %#x", ch)
	}
	if got, ok := s.alloc.channelFor(peerAddr); !ok || got != ch {
		t.Fatalf("channelFor = %#x %v", got, ok)
	}
	// Re-binding the same peer keeps the number (that is the refresh).
	if again, err := s.alloc.bindChannel(ctx, peerAddr); err != nil || again != ch {
		t.Fatalf("re-bind = %#x, %v", again, err)
	}

	// Out: ChannelData through the shared socket arrives at the peer from
	// the relayed address.
	frame := AppendChannelData(nil, ch, []byte("hello peer"))
	if _, err := s.pc.WriteToUDPAddrPort(frame, srv); err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2048)
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("peer read: %v", err)
	}
	if string(buf[:n]) != "hello peer" || from != relayed {
		t.Fatalf("peer got %q from %v, want %q from %v", buf[:n], from, "hello peer", relayed)
	}

	// In: the peer's datagram to the relayed address comes back as
	// ChannelData on our channel.
	if _, err := peer.WriteToUDPAddrPort([]byte("hello back"), relayed); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-s.data:
		num, payload, err := ParseChannelData(f)
		if err != nil || num != ch || string(payload) != "hello back" {
			t.Fatalf("channeldata %#x %q %v", num, payload, err)
		}
		if p, ok := s.alloc.peerFor(num); !ok || p != peerAddr {
			t.Fatalf("peerFor = %v %v", p, ok)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no channeldata from relay")
	}

	// A second peer gets another channel.
	if ch2, err := s.alloc.bindChannel(ctx, netip.MustParseAddrPort("127.0.0.1:9")); err != nil || ch2 == ch {
		t.Fatalf("second channel %#x, %v", ch2, err)
	}

	if err := s.alloc.refresh(ctx, 5*time.Minute); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if lt := s.alloc.allocationLifetime(); lt != 5*time.Minute {
		t.Fatalf("lifetime after refresh %v", lt)
	}
	if err := s.alloc.refresh(ctx, 0); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if s.alloc.relayedAddr().IsValid() {
		t.Fatal("still allocated after delete")
	}
	if _, err := s.alloc.bindChannel(ctx, peerAddr); !errors.Is(err, ErrTURNNoAllocation) {
		t.Fatalf("bind after delete: %v", err)
	}
	// A fresh allocation on the same 5-tuple works after the delete.
	if err := s.alloc.allocate(ctx); err != nil {
		t.Fatalf("allocate after delete: %v", err)
	}
}

// TestTURNAllocMismatchAfterCrash: a relay refuses a second allocation on
// one 5-tuple with 437. A fresh client on the same address (our process
// restarted on the same port while the relay kept the old allocation)
// deletes the old allocation and gets a new one; the old client's
// allocation is then gone.
func TestTURNAllocMismatchAfterCrash(t *testing.T) {
	srv := startTURN(t)
	s := newSharedSock(t, testRelay(srv), nil)
	ctx := ctxT(t, 20*time.Second)
	if err := s.alloc.allocate(ctx); err != nil {
		t.Fatal(err)
	}
	crashed := s.alloc
	// The restarted process: a new client on the same socket, which now
	// gets the relay's answers.
	s.alloc = newTURNAlloc(crashed.cfg)
	var te *TURNError
	if err := s.alloc.allocateOnce(ctx); !errors.As(err, &te) || te.Code != stun.CodeAllocMismatch {
		t.Fatalf("second ALLOCATE on one 5-tuple: %v, want 437", err)
	}
	if err := s.alloc.allocate(ctx); err != nil {
		t.Fatalf("allocate after a crash (relay answers 437): %v", err)
	}
	if !s.alloc.relayedAddr().IsValid() {
		t.Fatal("no relayed address")
	}
	// The new allocation works: a channel can be bound on it.
	peer := netip.MustParseAddrPort("127.0.0.1:9")
	if _, err := s.alloc.bindChannel(ctx, peer); err != nil {
		t.Fatalf("channel bind on the new allocation: %v", err)
	}
}

func TestTURNAllocBadCredentials(t *testing.T) {
	srv := startTURN(t)
	r := testRelay(srv)
	r.Password = "wrong"
	s := newSharedSock(t, r, nil)
	err := s.alloc.allocate(ctxT(t, 20*time.Second))
	if err == nil {
		t.Fatal("allocate with a wrong password succeeded")
	}
	var te *TURNError
	if !errors.Is(err, ErrTURNUnauthorized) && !errors.As(err, &te) {
		t.Fatalf("unexpected error %v", err)
	}
	if s.alloc.relayedAddr().IsValid() {
		t.Fatal("relayed address set after failure")
	}
}

func TestTURNAllocRealmRefused(t *testing.T) {
	srv := startTURN(t)
	r := testRelay(srv)
	r.Realm = "not-" + turnRealm
	s := newSharedSock(t, r, nil)
	if err := s.alloc.allocate(ctxT(t, 20*time.Second)); !errors.Is(err, ErrTURNRealm) {
		t.Fatalf("allocate against another realm: %v, want ErrTURNRealm", err)
	}
}

func TestTURNAllocTimeoutAndClose(t *testing.T) {
	// A socket that never answers stands in for a dead relay.
	silent, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = silent.Close() })
	r := testRelay(silent.LocalAddr().(*net.UDPAddr).AddrPort())
	s := newSharedSock(t, r, func(c *turnAllocConfig) {
		c.rto = 20 * time.Millisecond
		c.timeout = 300 * time.Millisecond
	})
	if err := s.alloc.allocate(ctxT(t, 20*time.Second)); !errors.Is(err, ErrTURNTimeout) {
		t.Fatalf("allocate against a silent relay: %v, want ErrTURNTimeout", err)
	}

	s2 := newSharedSock(t, r, func(c *turnAllocConfig) { c.timeout = time.Minute })
	errc := make(chan error, 1)
	go func() { errc <- s2.alloc.allocate(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	s2.alloc.close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrTURNClosed) {
			t.Fatalf("allocate after close: %v, want ErrTURNClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("close did not end the request in flight")
	}
	if err := s2.alloc.allocate(context.Background()); !errors.Is(err, ErrTURNClosed) {
		t.Fatalf("allocate on a closed client: %v", err)
	}
}

// TestTURNAllocHandleSTUNIgnoresStrangers: only answers to our own
// transactions are taken; the rest is left for ICE.
func TestTURNAllocHandleSTUNIgnoresStrangers(t *testing.T) {
	a := newTURNAlloc(turnAllocConfig{relay: testRelay(netip.MustParseAddrPort("127.0.0.1:3478")),
		send: func([]byte, netip.AddrPort) error { return nil }})
	m := stun.MustBuild(stun.TransactionID, stun.BindingSuccess)
	if a.handleSTUN(m.Raw) {
		t.Fatal("took a response to a transaction it did not send")
	}
	for _, p := range [][]byte{nil, {1, 2, 3}, make([]byte, 20)} {
		if a.handleSTUN(p) {
			t.Fatalf("took garbage %x", p)
		}
	}
}

func FuzzTURNAllocHandleSTUN(f *testing.F) {
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingSuccess).Raw)
	f.Add([]byte{0x01, 0x13, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		a := newTURNAlloc(turnAllocConfig{relay: testRelay(netip.MustParseAddrPort("127.0.0.1:3478")),
			send: func([]byte, netip.AddrPort) error { return nil }})
		// Pretend the message answers a pending request.
		if len(p) >= stunHeaderSize {
			var id [stun.TransactionIDSize]byte
			copy(id[:], p[8:stunHeaderSize])
			a.pending[id] = make(chan *stun.Message, 1)
		}
		a.handleSTUN(p)
	})
}

// TestTURNAllocMaintainRefreshes: with a 3 s lifetime, the allocation is
// still there after 3 lifetimes because maintain refreshes it at half.
func TestTURNAllocMaintainRefreshes(t *testing.T) {
	t.Parallel()
	srv := startTURN(t)
	s := newSharedSock(t, testRelay(srv), func(c *turnAllocConfig) { c.tick = 100 * time.Millisecond })
	ctx := ctxT(t, 30*time.Second)
	if err := s.alloc.allocate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.alloc.refresh(ctx, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.alloc.maintain(mctx) }()
	time.Sleep(9 * time.Second)
	stop()
	<-done
	if _, err := s.alloc.bindChannel(ctx, netip.MustParseAddrPort("127.0.0.1:9")); err != nil {
		t.Fatalf("allocation gone after 3 lifetimes with maintain running: %v", err)
	}
}

// TestTURNAllocExpiresWithoutRefresh is the control for the test above:
// without maintain the relay drops the allocation.
func TestTURNAllocExpiresWithoutRefresh(t *testing.T) {
	t.Parallel()
	srv := startTURN(t)
	s := newSharedSock(t, testRelay(srv), nil)
	ctx := ctxT(t, 30*time.Second)
	if err := s.alloc.allocate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.alloc.refresh(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	if _, err := s.alloc.bindChannel(ctx, netip.MustParseAddrPort("127.0.0.1:9")); err == nil {
		t.Fatal("channel bind on an expired allocation succeeded")
	}
}

// TestTURNAllocRecoversRelayRestart: after the relay restarts (and forgets
// the allocation without answering for it, as pion's server does), check
// re-creates the allocation with the same channel numbers.
func TestTURNAllocRecoversRelayRestart(t *testing.T) {
	srv, stop := startTURNOn(t, "127.0.0.1:0")
	s := newSharedSock(t, testRelay(srv), func(c *turnAllocConfig) {
		c.rto = 50 * time.Millisecond
		c.timeout = 500 * time.Millisecond
	})
	ctx := ctxT(t, 30*time.Second)
	if err := s.alloc.allocate(ctx); err != nil {
		t.Fatal(err)
	}
	peer, peerAddr, ch := s.boundPeer(t, ctx, "udp4", net.IPv4(127, 0, 0, 1))
	stop()
	startTURNOn(t, srv.String())
	if err := s.alloc.check(ctx); err != nil {
		t.Fatalf("check after the relay restart: %v", err)
	}
	if got, ok := s.alloc.channelFor(peerAddr); !ok || got != ch {
		t.Fatalf("channel after re-allocation %#x %v, want %#x", got, ok, ch)
	}
	relayed := s.alloc.relayedAddr()
	if _, err := s.pc.WriteToUDPAddrPort(AppendChannelData(nil, ch, []byte("after restart")), srv); err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2048)
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "after restart" || from != relayed {
		t.Fatalf("peer got %q from %v (%v), want data from the new allocation %v", buf[:n], from, err, relayed)
	}
}

// boundPeer opens a peer socket on ip and binds a channel to it on the
// allocation; the socket is closed when the test ends.
func (s *sharedSock) boundPeer(t *testing.T, ctx context.Context, network string, ip net.IP) (*net.UDPConn, netip.AddrPort, uint16) {
	t.Helper()
	peer, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	ch, err := s.alloc.bindChannel(ctx, peerAddr)
	if err != nil {
		t.Fatalf("channel bind: %v", err)
	}
	return peer, peerAddr, ch
}
