package snownet

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/pion/stun/v2"
	"golang.zx2c4.com/wireguard/conn"
)

func wgPacket(typ byte, size int, receiver uint32) []byte {
	p := make([]byte, size)
	p[0] = typ
	binary.LittleEndian.PutUint32(p[4:8], receiver)
	return p
}

func stunBinding(t testing.TB) []byte {
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername("abcd:efgh"), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

func TestClassify(t *testing.T) {
	// A transport packet whose receiver index puts the STUN magic cookie in
	// bytes 4..8 (big-endian on the wire).
	cookieIdx := wgPacket(4, 64, 0)
	binary.BigEndian.PutUint32(cookieIdx[4:8], stunMagicCookie)
	if !stun.IsMessage(cookieIdx) {
		t.Fatal("test packet should fool stun.IsMessage")
	}
	success, _ := stun.Build(stun.TransactionID, stun.BindingSuccess, &stun.XORMappedAddress{IP: []byte{127, 0, 0, 1}, Port: 1})
	tests := []struct {
		name string
		p    []byte
		want Kind
	}{
		{"wg initiation", wgPacket(1, 148, 7), KindWireGuard},
		{"wg response", wgPacket(2, 92, 7), KindWireGuard},
		{"wg cookie reply", wgPacket(3, 64, 7), KindWireGuard},
		{"wg keepalive", wgPacket(4, 32, 7), KindWireGuard},
		{"wg transport", wgPacket(4, 1452, 0xdeadbeef), KindWireGuard},
		{"wg transport receiver index == STUN cookie", cookieIdx, KindWireGuard},
		{"wg too short", wgPacket(4, 31, 7), KindUnknown},
		{"wg type 5", wgPacket(5, 64, 7), KindUnknown},
		{"wg type 0", wgPacket(0, 64, 7), KindUnknown},
		{"wg reserved byte set", func() []byte { p := wgPacket(4, 64, 7); p[2] = 1; return p }(), KindUnknown},
		{"stun binding request", stunBinding(t), KindSTUN},
		{"stun binding success", success.Raw, KindSTUN},
		{"stun truncated", stunBinding(t)[:30], KindUnknown},
		{"channeldata", AppendChannelData(nil, 0x4001, wgPacket(4, 32, 1)), KindChannelData},
		{"channeldata padded", append(AppendChannelData(nil, 0x7fff, []byte{1, 2, 3}), 0), KindChannelData},
		{"channeldata bad length", []byte{0x40, 0x00, 0x00, 0x10, 1, 2}, KindUnknown},
		{"empty", nil, KindUnknown},
		{"one byte", []byte{1}, KindUnknown},
		{"dns-ish junk", []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}, KindUnknown},
		{"rtp-ish 0x80", bytes.Repeat([]byte{0x80}, 40), KindUnknown},
	}
	for _, tc := range tests {
		if got := Classify(tc.p); got != tc.want {
			t.Errorf("%s: Classify = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseChannelData(t *testing.T) {
	payload := []byte("hello")
	frame := AppendChannelData(nil, 0x4abc, payload)
	ch, got, err := ParseChannelData(frame)
	if err != nil || ch != 0x4abc || !bytes.Equal(got, payload) {
		t.Fatalf("round trip: %x %q %v", ch, got, err)
	}
	for _, bad := range []struct {
		p   []byte
		err error
	}{
		{[]byte{0x40, 0}, ErrChannelDataShort},
		{[]byte{0x3f, 0xff, 0, 0}, ErrChannelDataNumber},
		{[]byte{0x80, 0x00, 0, 0}, ErrChannelDataNumber},
		{[]byte{0x40, 0x00, 0, 5, 1}, ErrChannelDataLength},
		{[]byte{0x40, 0x00, 0, 0, 1, 2, 3, 4}, ErrChannelDataPadding},
	} {
		if _, _, err := ParseChannelData(bad.p); err != bad.err {
			t.Errorf("%x: err %v, want %v", bad.p, err, bad.err)
		}
	}
}

func FuzzClassify(f *testing.F) {
	f.Add(wgPacket(1, 148, 1))
	f.Add(wgPacket(4, 32, stunMagicCookie))
	f.Add(stunBinding(f))
	f.Add(AppendChannelData(nil, 0x4000, []byte{1, 2, 3, 4}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		k := Classify(p)
		switch k {
		case KindWireGuard:
			if len(p) < wgMinMessageSize || p[0] < 1 || p[0] > 4 {
				t.Fatalf("bad wireguard verdict for %x", p)
			}
		case KindSTUN:
			if !stun.IsMessage(p) || isWireGuard(p) {
				t.Fatalf("bad stun verdict for %x", p)
			}
			var m stun.Message
			_ = stun.Decode(p, &m) // must not panic
			u := stunUsername(p)
			if want, err := m.Get(stun.AttrUsername); err == nil && isSTUNRequest(p) && u != nil && string(u) != string(want) {
				t.Fatalf("USERNAME %q, pion says %q", u, want)
			}
		case KindChannelData:
			if _, _, err := ParseChannelData(p); err != nil {
				t.Fatalf("channeldata verdict but parse error %v", err)
			}
		}
	})
}

func FuzzParseChannelData(f *testing.F) {
	f.Add(AppendChannelData(nil, 0x4000, []byte("payload")))
	f.Add([]byte{0x7f, 0xff, 0x00, 0x01, 0xaa, 0, 0, 0})
	f.Add([]byte{0x40})
	f.Fuzz(func(t *testing.T, p []byte) {
		ch, payload, err := ParseChannelData(p)
		if err != nil {
			return
		}
		if ch < minChannelNumber || ch > maxChannelNumber {
			t.Fatalf("channel %x out of range", ch)
		}
		re := AppendChannelData(nil, ch, payload)
		if !bytes.Equal(re, p[:len(re)]) || len(p)-len(re) > 3 {
			t.Fatalf("re-encoding %x gives %x", p, re)
		}
	})
}

// fakeInner is a conn.Bind whose receive function returns a fixed batch.
type fakeInner struct {
	batch [][]byte
	from  *conn.StdNetEndpoint
	sent  int
}

func (f *fakeInner) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	fn := func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for i, p := range f.batch {
			sizes[i] = copy(bufs[i], p)
			eps[i] = f.from
		}
		return len(f.batch), nil
	}
	return []conn.ReceiveFunc{fn}, 51820, nil
}
func (f *fakeInner) Close() error                                  { return nil }
func (f *fakeInner) SetMark(uint32) error                          { return nil }
func (f *fakeInner) Send(bufs [][]byte, ep conn.Endpoint) error    { f.sent += len(bufs); return nil }
func (f *fakeInner) ParseEndpoint(s string) (conn.Endpoint, error) { return nil, nil }
func (f *fakeInner) BatchSize() int                                { return 128 }

func TestBindReceiveClassifiesAndCounts(t *testing.T) {
	from := &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort("127.0.0.1:9")}
	inner := &fakeInner{from: from, batch: [][]byte{
		wgPacket(4, 64, 1), stunBinding(t), AppendChannelData(nil, 0x4000, []byte{1, 2, 3, 4}), []byte("junk junk junk"),
	}}
	b := NewBind(BindConfig{Inner: inner})
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	sc := newSTUNConn(b, nil)
	b.attachSTUN(sc)
	bufs, sizes, eps := make([][]byte, 128), make([]int, 128), make([]conn.Endpoint, 128)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	n, err := fns[0](bufs, sizes, eps)
	if err != nil || n != 4 {
		t.Fatalf("n=%d err=%v", n, err)
	}
	if sizes[0] != 64 || sizes[1] != 0 || sizes[2] != 0 || sizes[3] != 0 {
		t.Fatalf("sizes %v: only the WireGuard packet should survive", sizes[:4])
	}
	st := b.Stats()
	if st.WireGuard != 1 || st.STUN != 1 || st.ChannelData != 1 || st.Unknown != 1 {
		t.Fatalf("stats %+v", st)
	}
	buf := make([]byte, 1500)
	m, addr, err := sc.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:m], inner.batch[1]) || addr.String() != "127.0.0.1:9" {
		t.Fatalf("STUN conn got %d bytes from %v, err %v", m, addr, err)
	}
	_ = b.Close()
	if _, err := fns[len(fns)-1](bufs, sizes, eps); err == nil {
		t.Fatal("relay receive func must return net.ErrClosed after Close")
	}
}

// The classifier and the send path must not allocate per packet.
func TestBindAllocations(t *testing.T) {
	from := &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort("127.0.0.1:9")}
	batch := make([][]byte, 128)
	for i := range batch {
		batch[i] = wgPacket(4, 1452, uint32(i))
	}
	inner := &fakeInner{from: from, batch: batch}
	b := NewBind(BindConfig{Inner: inner})
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	bufs, sizes, eps := make([][]byte, 128), make([]int, 128), make([]conn.Endpoint, 128)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	if a := testing.AllocsPerRun(50, func() { _, _ = fns[0](bufs, sizes, eps) }); a != 0 {
		t.Errorf("receive: %v allocs per batch, want 0", a)
	}
	ep, _ := b.ParseEndpoint("peer")
	b.SetPath("peer", PathDirect, netip.MustParseAddrPort("127.0.0.1:10"), nil)
	if a := testing.AllocsPerRun(50, func() { _ = b.Send(batch, ep) }); a != 0 {
		t.Errorf("send: %v allocs per batch, want 0", a)
	}
	if inner.sent == 0 {
		t.Fatal("inner Send not called")
	}
	// Relay ring: push and drain without allocating.
	relayFn := fns[len(fns)-1]
	pe := ep.(*peerEndpoint)
	if a := testing.AllocsPerRun(50, func() {
		for i := 0; i < 8; i++ {
			b.relay.push(batch[i], pe, nil)
		}
		if n, _ := relayFn(bufs, sizes, eps); n != 8 {
			t.Fatalf("relay batch %d, want 8", n)
		}
	}); a != 0 {
		t.Errorf("relay ring: %v allocs per batch, want 0", a)
	}
}

func TestBindHoldsHandshakeUntilPath(t *testing.T) {
	inner := &fakeInner{}
	b := NewBind(BindConfig{Inner: inner})
	ep, _ := b.ParseEndpoint("p")
	if err := b.Send([][]byte{wgPacket(4, 64, 1)}, ep); err != ErrNoPath {
		t.Fatalf("data without path: %v, want ErrNoPath", err)
	}
	if err := b.Send([][]byte{wgPacket(1, 148, 1)}, ep); err != nil {
		t.Fatalf("initiation without path: %v, want nil (held)", err)
	}
	if inner.sent != 0 {
		t.Fatal("sent without path")
	}
	b.SetPath("p", PathDirect, netip.MustParseAddrPort("127.0.0.1:10"), nil)
	if inner.sent != 1 {
		t.Fatalf("held initiation not flushed on path change (sent %d)", inner.sent)
	}
	if b.Stats().NoPath != 1 {
		t.Fatalf("NoPath = %d", b.Stats().NoPath)
	}
}

// Several readers push concurrently; the receive function returns batches,
// loses nothing and keeps each reader's order.
func TestRelayRingConcurrent(t *testing.T) {
	r := newRelayRing(16, 64)
	var counter atomic.Uint64
	closed := make(chan struct{})
	fn := r.receiveFunc(closed, &counter)
	const readers, per = 4, 2000
	eps := make([]*peerEndpoint, readers)
	for i := range eps {
		eps[i] = newPeerEndpoint(string(rune('a' + i)))
		go func(i int) {
			p := make([]byte, 8)
			for j := 0; j < per; j++ {
				binary.BigEndian.PutUint32(p, uint32(j))
				if !r.push(p, eps[i], nil) {
					panic("push refused")
				}
			}
		}(i)
	}
	bufs, sizes, got := make([][]byte, 8), make([]int, 8), make([]conn.Endpoint, 8)
	for i := range bufs {
		bufs[i] = make([]byte, 64)
	}
	next := make(map[*peerEndpoint]uint32)
	total, maxBatch := 0, 0
	for total < readers*per {
		n, err := fn(bufs, sizes, got)
		if err != nil || n < 1 || n > len(bufs) {
			t.Fatalf("n=%d err=%v", n, err)
		}
		maxBatch = max(maxBatch, n)
		for i := 0; i < n; i++ {
			pe := got[i].(*peerEndpoint)
			if v := binary.BigEndian.Uint32(bufs[i][:sizes[i]]); v != next[pe] {
				t.Fatalf("reader %s: got %d, want %d", pe.id, v, next[pe])
			}
			next[pe]++
		}
		total += n
	}
	if counter.Load() != readers*per {
		t.Fatalf("counter %d", counter.Load())
	}
	t.Logf("largest batch %d", maxBatch)
	close(closed)
	if _, err := fn(bufs, sizes, got); err == nil {
		t.Fatal("want net.ErrClosed after close")
	}
	if r.push(make([]byte, 65), eps[0], nil) {
		t.Fatal("oversized packet accepted")
	}
}

func TestSTUNUsername(t *testing.T) {
	if u := stunUsername(stunBinding(t)); string(u) != "abcd:efgh" {
		t.Fatalf("USERNAME %q", u)
	}
	resp, _ := stun.Build(stun.TransactionID, stun.BindingSuccess)
	if u := stunUsername(resp.Raw); u != nil || isSTUNRequest(resp.Raw) {
		t.Fatalf("response: username %q request %v", u, isSTUNRequest(resp.Raw))
	}
	if !isSTUNRequest(stunBinding(t)) {
		t.Fatal("binding request not recognised")
	}
	bad := stunBinding(t)
	binary.BigEndian.PutUint16(bad[22:24], 0xffff) // first attribute overruns
	if u := stunUsername(bad); u != nil {
		t.Fatalf("malformed: %q", u)
	}
}
