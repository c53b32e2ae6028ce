package relay

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v2"
)

// fuzzSetup is a relay with one allocation (channel 0x4000 bound to a
// loopback peer) whose client address the fuzzed datagrams come from.
func fuzzSetup(t testing.TB) (*Server, netip.AddrPort) {
	s := startRelayCfg(t, Config{})
	user, pass := s.Credentials(testKey, time.Now().Add(time.Hour).Unix())
	c := newRawClient(t, s.Addr(), user, pass)
	c.allocate()
	_, peerAddr := listenPeer(t)
	mustSucceed(t, "bind", c.channelBind(0x4000, peerAddr))
	return s, c.addr()
}

// FuzzHandleClientDatagram feeds arbitrary datagrams from a client with an
// allocation to the listen socket's handler: it must never panic, and
// what it cannot use is dropped and counted.
func FuzzHandleClientDatagram(f *testing.F) {
	bind, _ := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	alloc, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedUDP(),
		stun.NewUsername("2145916800:salt"), stun.NewRealm(Realm), stun.NewNonce("00"), stun.NewShortTermIntegrity("x"))
	send, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		xorAddr{stun.AttrXORPeerAddress, netip.MustParseAddrPort("127.0.0.1:9")}, stun.RawAttribute{Type: stun.AttrData, Value: []byte("x")})
	f.Add(bind.Raw)
	f.Add(alloc.Raw)
	f.Add(send.Raw)
	f.Add([]byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4})
	f.Add([]byte{0x40, 0x00, 0xff, 0xff, 1})
	f.Add([]byte{0x7f, 0xff, 0x00, 0x00})
	f.Add([]byte("garbage"))
	s, from := fuzzSetup(f)
	w := newBatchWriter(batchSize)
	bufs, sizes, gso, froms := make([][]byte, 1), make([]int, 1), make([]int, 1), []netip.AddrPort{from}
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) > bufSize {
			p = p[:bufSize]
		}
		bufs[0], sizes[0] = append([]byte(nil), p...), len(p)
		before := s.Stats()
		s.handleClientBatch(bufs, sizes, gso, froms, w)
		after := s.Stats()
		if len(p) < 4 && after.Dropped == before.Dropped {
			t.Fatalf("a %d-byte datagram was not dropped", len(p))
		}
	})
}

// TestForwardingAllocatesNothing: the data plane's batch handlers make no
// allocation per datagram in either direction.
func TestForwardingAllocatesNothing(t *testing.T) {
	s, from := fuzzSetup(t)
	clientBatch := newBatchBufs(batchSize, 0)
	n := 16
	fill := func() { // the handler compacts payloads over the headers
		for i := 0; i < n; i++ {
			p := clientBatch.bufs[i]
			binary.BigEndian.PutUint16(p[0:2], 0x4000)
			binary.BigEndian.PutUint16(p[2:4], 1280)
			clientBatch.sizes[i] = 4 + 1280
			clientBatch.from[i] = from
		}
	}
	w := newBatchWriter(batchSize)
	if a := testing.AllocsPerRun(100, func() {
		fill()
		s.handleClientBatch(clientBatch.rd[:n], clientBatch.sizes[:n], clientBatch.gso[:n], clientBatch.from[:n], w)
	}); a != 0 {
		t.Errorf("client → peer: %v allocations per batch", a)
	}
	a := (*s.clients.Load())[from]
	peer := a.channels.Load().byNum[0x4000]
	peerBatch := newBatchBufs(batchSize, channelHeader)
	for i := 0; i < n; i++ {
		peerBatch.sizes[i] = 1280
		peerBatch.from[i] = peer
	}
	w2 := newBatchWriter(batchSize)
	w2.begin(s.main)
	if allocs := testing.AllocsPerRun(100, func() {
		s.handlePeerBatch(a, peerBatch.bufs[:n], peerBatch.sizes[:n], peerBatch.gso[:n], peerBatch.from[:n], w2)
	}); allocs != 0 {
		t.Errorf("peer → client: %v allocations per batch", allocs)
	}
	if st := s.Stats(); st.ToPeers < 100*uint64(n) || st.ToClients < 100*uint64(n) {
		t.Fatalf("not forwarded: %+v", st)
	}
}
