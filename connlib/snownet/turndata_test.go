package snownet

import (
	"bytes"
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
)

// recordBind is an inner conn.Bind that keeps copies of what is sent.
type recordBind struct {
	sent [][]byte
	to   []conn.Endpoint
	keep bool
}

var _ conn.Bind = (*recordBind)(nil)

func (r *recordBind) Open(uint16) ([]conn.ReceiveFunc, uint16, error) { return nil, 1, nil }
func (r *recordBind) Close() error                                    { return nil }
func (r *recordBind) SetMark(uint32) error                            { return nil }
func (r *recordBind) BatchSize() int                                  { return 128 }
func (r *recordBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	return conn.NewStdNetBind().ParseEndpoint(s)
}
func (r *recordBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	if !r.keep {
		return nil
	}
	for _, b := range bufs {
		r.sent = append(r.sent, append([]byte(nil), b...))
		r.to = append(r.to, ep)
	}
	return nil
}

// wgDataPacket is a fake WireGuard transport packet of n bytes inside a buffer
// with tail room (like wireguard-go's elements) or without.
func wgDataPacket(n int, room bool) []byte {
	c := n
	if room {
		c = n + 64
	}
	b := make([]byte, n, c)
	b[0] = 4
	for i := 16; i < n; i++ {
		b[i] = byte(i)
	}
	return b
}

func TestTURNDataSendFramesChannelData(t *testing.T) {
	rb := &recordBind{keep: true}
	b := NewBind(BindConfig{Inner: rb})
	relay := netip.MustParseAddrPort("127.0.0.1:3478")
	tp := newTURNProxy(testRelay(relay), nil, nil)
	b.setTURNPath("bob", tp, 0x4001)
	e := b.peer("bob")

	withRoom, without := wgDataPacket(100, true), wgDataPacket(148, false)
	want := [][]byte{append([]byte(nil), withRoom...), append([]byte(nil), without...)}
	if err := b.Send([][]byte{withRoom, without}, e); err != nil {
		t.Fatal(err)
	}
	if len(rb.sent) != 2 {
		t.Fatalf("sent %d datagrams, want 2 in one batch", len(rb.sent))
	}
	for i, f := range rb.sent {
		ch, payload, err := ParseChannelData(f)
		if err != nil || ch != 0x4001 || !bytes.Equal(payload, want[i]) {
			t.Fatalf("frame %d: channel %#x err %v payload ok %v", i, ch, err, bytes.Equal(payload, want[i]))
		}
		if se, ok := rb.to[i].(*conn.StdNetEndpoint); !ok || se.AddrPort != relay {
			t.Fatalf("frame %d went to %v, want the relay %v", i, rb.to[i], relay)
		}
	}
	if tp.data.route(0x4001) != e {
		t.Fatal("channel not routed to the peer")
	}
	if s := b.Stats(); s.RelayedOut != 2 {
		t.Fatalf("RelayedOut %d", s.RelayedOut)
	}
	// Another path removes the route.
	b.SetPath("bob", PathDirect, netip.MustParseAddrPort("127.0.0.1:9"), nil)
	if tp.data.route(0x4001) != nil {
		t.Fatal("route kept after the peer left the relayed path")
	}
}

func TestTURNDataSendAllocs(t *testing.T) {
	b := NewBind(BindConfig{Inner: &recordBind{}})
	tp := newTURNProxy(testRelay(netip.MustParseAddrPort("127.0.0.1:3478")), nil, nil)
	b.setTURNPath("bob", tp, 0x4001)
	e := b.peer("bob")
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = wgDataPacket(1200, true)
	}
	hs := [][]byte{wgDataPacket(148, false)}
	allocs := testing.AllocsPerRun(200, func() {
		for i := range bufs {
			bufs[i] = bufs[i][:1200]
		}
		_ = b.Send(bufs, e)
		_ = b.Send(hs, e)
	})
	if allocs > 0 && !raceEnabled {
		t.Fatalf("%v allocations per relayed batch, want 0", allocs)
	}
}

func TestTURNDataUnwrapInPlace(t *testing.T) {
	b := NewBind(BindConfig{Inner: &recordBind{}})
	relay := netip.MustParseAddrPort("127.0.0.1:3478")
	tp := newTURNProxy(testRelay(relay), nil, nil)
	b.setTURNPath("bob", tp, 0x4002)
	e := b.peer("bob")
	wg := wgDataPacket(200, false)
	frame := AppendChannelData(make([]byte, 0, 2048), 0x4002, wg)
	unknown := AppendChannelData(make([]byte, 0, 2048), 0x4003, wg)
	bufs := [][]byte{frame[:cap(frame)], unknown[:cap(unknown)]}
	sizes := []int{len(frame), len(unknown)}
	src := &conn.StdNetEndpoint{AddrPort: relay}
	eps := []conn.Endpoint{src, src}
	if !b.unwrapTURN(tp, bufs, sizes, eps, 0) {
		t.Fatal("routed WireGuard ChannelData not unwrapped")
	}
	if sizes[0] != len(wg) || !bytes.Equal(bufs[0][:sizes[0]], wg) || eps[0] != e {
		t.Fatalf("unwrapped %d bytes ep %v", sizes[0], eps[0])
	}
	if b.unwrapTURN(tp, bufs, sizes, eps, 1) || sizes[1] != 0 {
		t.Fatal("ChannelData on an unrouted channel was handed to WireGuard")
	}
	if s := b.Stats(); s.ChannelData != 1 {
		t.Fatalf("dropped ChannelData %d, want 1", s.ChannelData)
	}
	allocs := testing.AllocsPerRun(200, func() {
		copy(bufs[0], frame)
		sizes[0] = len(frame)
		b.unwrapTURN(tp, bufs, sizes, eps, 0)
	})
	if allocs > 0 {
		t.Fatalf("%v allocations per unwrapped packet, want 0", allocs)
	}
}
