package snownet

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v2"
)

// fakeRelay is a scripted TURN server on loopback for the error paths
// pion/turn's server does not take: a stale nonce (438) on the first
// authenticated request and 437 on REFRESH of an allocation it "lost"
// (what Firezone's relay answers after a restart).
type fakeRelay struct {
	pc    *net.UDPConn
	realm string

	mu          sync.Mutex
	nonce       string
	staleOnce   bool // answer the next authenticated request with 438
	lost        bool // answer REFRESH with 437
	allocations int
	seen        []stun.Method // authenticated requests answered with success
}

func startFakeRelay(t *testing.T) *fakeRelay {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRelay{pc: pc, realm: turnRealm, nonce: "nonce-1"}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if m.Decode() != nil {
				continue
			}
			if res := f.answer(m); res != nil {
				_, _ = pc.WriteToUDPAddrPort(res.Raw, from)
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return f
}

func (f *fakeRelay) addr() netip.AddrPort { return f.pc.LocalAddr().(*net.UDPAddr).AddrPort() }

func (f *fakeRelay) answer(m *stun.Message) *stun.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	fail := func(code stun.ErrorCode, extra ...stun.Setter) *stun.Message {
		s := append([]stun.Setter{stun.NewTransactionIDSetter(m.TransactionID),
			stun.NewType(m.Type.Method, stun.ClassErrorResponse), stun.ErrorCodeAttribute{Code: code}}, extra...)
		return stun.MustBuild(s...)
	}
	if !m.Contains(stun.AttrUsername) {
		return fail(stun.CodeUnauthorized, stun.NewRealm(f.realm), stun.NewNonce(f.nonce))
	}
	integ := stun.NewLongTermIntegrity(turnUser, f.realm, turnPass)
	if integ.Check(m) != nil {
		return fail(stun.CodeUnauthorized, stun.NewRealm(f.realm), stun.NewNonce(f.nonce))
	}
	if nonce, _ := m.Get(stun.AttrNonce); string(nonce) != f.nonce || f.staleOnce {
		f.staleOnce = false
		f.nonce += "+"
		return fail(stun.CodeStaleNonce, stun.NewRealm(f.realm), stun.NewNonce(f.nonce))
	}
	ok := []stun.Setter{stun.NewTransactionIDSetter(m.TransactionID), stun.NewType(m.Type.Method, stun.ClassSuccessResponse)}
	switch m.Type.Method {
	case stun.MethodAllocate:
		f.allocations++
		f.lost = false
		ok = append(ok, xorAddr{stun.AttrXORRelayedAddress, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(50000+f.allocations))},
			rawAttr{stun.AttrLifetime, []byte{0, 0, 2, 0x58}})
	case stun.MethodRefresh:
		if f.lost {
			return fail(stun.CodeAllocMismatch)
		}
		ok = append(ok, rawAttr{stun.AttrLifetime, []byte{0, 0, 2, 0x58}})
	case stun.MethodChannelBind:
		if f.lost {
			return fail(stun.CodeAllocMismatch)
		}
	default:
		return fail(stun.CodeBadRequest)
	}
	f.seen = append(f.seen, m.Type.Method)
	return stun.MustBuild(append(ok, integ)...)
}

// A 438 (stale nonce) is answered by retrying with the relay's new nonce,
// on ALLOCATE and later on REFRESH.
func TestTURNAllocStaleNonce(t *testing.T) {
	f := startFakeRelay(t)
	f.mu.Lock() // its reader goroutine is running
	f.staleOnce = true
	f.mu.Unlock()
	s := newSharedSock(t, testRelay(f.addr()), nil)
	ctx := ctxT(t, 20*time.Second)
	if err := s.alloc.allocate(ctx); err != nil {
		t.Fatalf("allocate with a stale nonce on the first try: %v", err)
	}
	f.mu.Lock()
	f.staleOnce = true
	f.mu.Unlock()
	if err := s.alloc.refresh(ctx, 10*time.Minute); err != nil {
		t.Fatalf("refresh after the nonce went stale: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) != 2 || f.seen[0] != stun.MethodAllocate || f.seen[1] != stun.MethodRefresh {
		t.Fatalf("relay answered %v", f.seen)
	}
}

// A relay that answers REFRESH with 437 (Firezone's relay after a restart)
// gets a new ALLOCATE at once, and the channels are bound again on their
// old numbers.
func TestTURNAllocRefresh437Reallocates(t *testing.T) {
	f := startFakeRelay(t)
	s := newSharedSock(t, testRelay(f.addr()), nil)
	ctx := ctxT(t, 20*time.Second)
	if err := s.alloc.allocate(ctx); err != nil {
		t.Fatal(err)
	}
	peer := netip.MustParseAddrPort("127.0.0.1:9")
	ch, err := s.alloc.bindChannel(ctx, peer)
	if err != nil {
		t.Fatal(err)
	}
	old := s.alloc.relayedAddr()
	f.mu.Lock()
	f.lost = true
	f.mu.Unlock()
	start := time.Now()
	if err := s.alloc.check(ctx); err != nil {
		t.Fatalf("check against a relay that lost the allocation: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("re-allocation took %v: it waited for timeouts instead of acting on 437", took)
	}
	if ra := s.alloc.relayedAddr(); !ra.IsValid() || ra == old {
		t.Fatalf("relayed address %v after re-allocation (was %v)", ra, old)
	}
	if got, ok := s.alloc.channelFor(peer); !ok || got != ch {
		t.Fatalf("channel %#x %v after re-allocation, want %#x", got, ok, ch)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.allocations != 2 {
		t.Fatalf("%d allocations, want 2", f.allocations)
	}
}
