package relay

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestCoalescedMessages: messages holding several datagrams (as UDP_GRO
// hands them over) are split at their segment size in both directions,
// compacted or expanded in place, and every datagram arrives intact and in
// order, also when a segment in the middle is not for the channel.
func TestCoalescedMessages(t *testing.T) {
	s := startRelayCfg(t, Config{})
	user, pass := s.Credentials(testKey, time.Now().Add(time.Hour).Unix())
	c := newRawClient(t, s.Addr(), user, pass)
	relayed := c.allocate()
	peer, peerAddr := listenPeer(t)
	mustSucceed(t, "bind", c.channelBind(0x4000, peerAddr))

	payload := func(i, n int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, n) }
	// Client → peer: 100, 100, garbage, 100, 50 bytes, segment size 104.
	const g = 104
	buf := make([]byte, bufSize)
	var msg []byte
	for i, l := range []int{100, 100, -1, 100, 50} {
		if l < 0 {
			msg = append(msg, bytes.Repeat([]byte{0xFF}, g)...)
			continue
		}
		msg = binary.BigEndian.AppendUint16(msg, 0x4000)
		msg = binary.BigEndian.AppendUint16(msg, uint16(l))
		msg = append(msg, payload(i, l)...)
	}
	copy(buf, msg)
	w := newBatchWriter(batchSize)
	dropped := s.Dropped()
	s.handleClientBatch([][]byte{buf}, []int{len(msg)}, []int{g}, []netip.AddrPort{c.addr()}, w)
	for _, want := range []struct{ i, l int }{{0, 100}, {1, 100}, {3, 100}, {4, 50}} {
		got, from := readFrom(t, peer)
		if !bytes.Equal(got, payload(want.i, want.l)) || from != relayed {
			t.Fatalf("peer got %q from %v, want %d×%c", got, from, want.l, 'a'+want.i)
		}
	}
	if s.Dropped() != dropped+1 {
		t.Fatalf("the garbage segment was not counted: %d → %d", dropped, s.Dropped())
	}

	// Peer → client: three datagrams of 200, 200, 30 bytes, read at offset 4.
	a := (*s.clients.Load())[c.addr()]
	pb := make([]byte, bufSize)
	n := 0
	for i, l := range []int{200, 200, 30} {
		n += copy(pb[channelHeader+n:], payload(i, l))
	}
	w2 := newBatchWriter(batchSize)
	w2.begin(s.main)
	s.handlePeerBatch(a, [][]byte{pb}, []int{n}, []int{200}, []netip.AddrPort{peerAddr}, w2)
	for i, l := range []int{200, 200, 30} {
		got, _ := readFrom(t, c.conn)
		want := append([]byte{0x40, 0x00, byte(l >> 8), byte(l)}, payload(i, l)...)
		if !bytes.Equal(got, want) {
			t.Fatalf("client datagram %d: got %d bytes %x…, want %d", i, len(got), got[:min(8, len(got))], len(want))
		}
	}
	if st := s.Stats(); st.ToPeers != 4 || st.ToClients != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// TestThroughSocketsWithGSO sends GSO batches through real sockets both
// ways and counts what arrives (the kernel may or may not coalesce; the
// relay must deliver every datagram with its content either way).
func TestThroughSocketsWithGSO(t *testing.T) {
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoOffloads=%v", off), func(t *testing.T) {
			s := startRelayCfg(t, Config{NoOffloads: off})
			user, pass := s.Credentials(testKey, time.Now().Add(time.Hour).Unix())
			c := newRawClient(t, s.Addr(), user, pass)
			relayed := c.allocate()
			peer, peerAddr := listenPeer(t)
			mustSucceed(t, "bind", c.channelBind(0x4abc, peerAddr))
			cs, _ := newSock(c.conn)
			ps, _ := newSock(peer)
			const k, l = 8, 1280
			var toPeer, toClient []byte
			for i := 0; i < k; i++ {
				toPeer = binary.BigEndian.AppendUint16(toPeer, 0x4abc)
				toPeer = binary.BigEndian.AppendUint16(toPeer, l)
				toPeer = append(toPeer, bytes.Repeat([]byte{byte(i)}, l)...)
				toClient = append(toClient, bytes.Repeat([]byte{byte(100 + i)}, l)...)
			}
			w := newBatchWriter(4)
			w.begin(cs)
			w.add(toPeer, s.Addr(), l+4)
			w.flush()
			for i := 0; i < k; i++ {
				if got, _ := readFrom(t, peer); !bytes.Equal(got, bytes.Repeat([]byte{byte(i)}, l)) {
					t.Fatalf("peer datagram %d: %d bytes of %d", i, len(got), got[0])
				}
			}
			w.begin(ps)
			w.add(toClient, relayed, l)
			w.flush()
			for i := 0; i < k; i++ {
				got, _ := readFrom(t, c.conn)
				want := append([]byte{0x4a, 0xbc, l >> 8, l & 0xff}, bytes.Repeat([]byte{byte(100 + i)}, l)...)
				if !bytes.Equal(got, want) {
					t.Fatalf("client datagram %d: %d bytes", i, len(got))
				}
			}
		})
	}
}
