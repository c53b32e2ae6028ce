package tun

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/gozone/gozone/tun/tuntest"
)

var (
	fa4 = netip.MustParseAddrPort("10.0.0.1:1000")
	fb4 = netip.MustParseAddrPort("10.0.0.2:2000")
	fa6 = netip.MustParseAddrPort("[fd00::1]:1000")
	fb6 = netip.MustParseAddrPort("[fd00::2]:2000")
)

func mustHash(t *testing.T, pkt []byte) uint64 {
	t.Helper()
	h, ok := FlowHash(pkt)
	if !ok {
		t.Fatalf("FlowHash rejected a valid packet % x", pkt)
	}
	return h
}

func TestFlowHashSymmetric(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fwd, rev []byte
	}{
		{"udp4", tuntest.UDP(fa4, fb4, []byte("x")), tuntest.UDP(fb4, fa4, []byte("yy"))},
		{"udp6", tuntest.UDP(fa6, fb6, []byte("x")), tuntest.UDP(fb6, fa6, nil)},
		{"tcp4", tuntest.TCP(fa4, fb4, 1, 0, tuntest.TCPSyn, nil), tuntest.TCP(fb4, fa4, 9, 2, tuntest.TCPSyn|tuntest.TCPAck, nil)},
		{"tcp6", tuntest.TCP(fa6, fb6, 1, 0, tuntest.TCPSyn, nil), tuntest.TCP(fb6, fa6, 9, 2, tuntest.TCPAck, []byte("z"))},
		{"icmp4", tuntest.ICMPEcho(fa4.Addr(), fb4.Addr(), false, 1, 1, nil), tuntest.ICMPEcho(fb4.Addr(), fa4.Addr(), true, 1, 1, nil)},
		{"icmp6", tuntest.ICMPEcho(fa6.Addr(), fb6.Addr(), false, 1, 1, nil), tuntest.ICMPEcho(fb6.Addr(), fa6.Addr(), true, 1, 1, nil)},
	} {
		if mustHash(t, tc.fwd) != mustHash(t, tc.rev) {
			t.Errorf("%s: a packet and its reply hash differently", tc.name)
		}
	}
}

func TestFlowHashSeparatesFlows(t *testing.T) {
	base := mustHash(t, tuntest.UDP(fa4, fb4, nil))
	for name, pkt := range map[string][]byte{
		"src port": tuntest.UDP(netip.AddrPortFrom(fa4.Addr(), 1001), fb4, nil),
		"dst port": tuntest.UDP(fa4, netip.AddrPortFrom(fb4.Addr(), 2001), nil),
		"protocol": tuntest.TCP(fa4, fb4, 0, 0, tuntest.TCPAck, nil),
		"address":  tuntest.UDP(netip.MustParseAddrPort("10.0.0.3:1000"), fb4, nil),
	} {
		if mustHash(t, pkt) == base {
			t.Errorf("changing the %s does not change the hash", name)
		}
	}
	// Same 5-tuple, different payload and TCP state: same flow.
	if mustHash(t, tuntest.TCP(fa6, fb6, 1, 2, tuntest.TCPAck, []byte("a"))) != mustHash(t, tuntest.TCP(fa6, fb6, 500, 7, tuntest.TCPPsh|tuntest.TCPAck, []byte("bbb"))) {
		t.Error("segments of one TCP flow hash differently")
	}
	// ICMP has no ports: all echo ids of an address pair are one flow.
	if mustHash(t, tuntest.ICMPEcho(fa4.Addr(), fb4.Addr(), false, 1, 1, nil)) != mustHash(t, tuntest.ICMPEcho(fa4.Addr(), fb4.Addr(), false, 7, 9, nil)) {
		t.Error("ICMP echoes of one address pair hash differently")
	}
}

// TestFlowHashFragments: every IPv4 fragment of a pair hashes by address
// pair and protocol, since only the first carries the ports.
func TestFlowHashFragments(t *testing.T) {
	first := tuntest.UDP(fa4, fb4, make([]byte, 64))
	first[6] |= 0x20 // more fragments
	other := tuntest.UDP(netip.AddrPortFrom(fa4.Addr(), 5), netip.AddrPortFrom(fb4.Addr(), 6), make([]byte, 64))
	other[6], other[7] = 0, 8 // fragment offset 64, bytes 20.. are payload
	if mustHash(t, first) != mustHash(t, other) {
		t.Error("fragments of one address pair hash differently")
	}
	if mustHash(t, first) == mustHash(t, tuntest.UDP(fa4, fb4, nil)) {
		t.Error("fragment hashes like the unfragmented 5-tuple (ports were used)")
	}
}

func TestFlowHashRejects(t *testing.T) {
	for _, pkt := range [][]byte{
		nil, {}, {0x45}, bytes.Repeat([]byte{0x45}, 19), // short v4
		append([]byte{0x44}, make([]byte, 30)...), // IHL 4 < 5
		append([]byte{0x4f}, make([]byte, 30)...), // IHL 15 > len
		append([]byte{0x60}, make([]byte, 30)...), // short v6
		append([]byte{0x70}, make([]byte, 60)...), // version 7
	} {
		if _, ok := FlowHash(pkt); ok {
			t.Errorf("FlowHash accepted % x", pkt)
		}
	}
}

func TestQueueForSpreads(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 16} {
		counts := make([]int, n)
		const flows = 4000
		for i := range flows {
			h := mustHash(t, tuntest.UDP(netip.AddrPortFrom(fa4.Addr(), uint16(i)), fb4, nil))
			q := queueFor(h, n)
			if q < 0 || q >= n {
				t.Fatalf("queueFor(_, %d) = %d", n, q)
			}
			counts[q]++
		}
		for q, c := range counts {
			if want := flows / n; c < want/2 || c > want*3/2 {
				t.Errorf("%d queues: queue %d got %d of %d flows", n, q, c, flows)
			}
		}
	}
}

func TestFlowHashAllocs(t *testing.T) {
	pkt := tuntest.TCP(fa6, fb6, 1, 2, tuntest.TCPAck, nil)
	if a := testing.AllocsPerRun(100, func() { _, _ = FlowHash(pkt) }); a != 0 {
		t.Fatalf("FlowHash allocates %v times", a)
	}
}

// reversed returns a copy of pkt with addresses and (where present) the
// first four transport bytes swapped pairwise, i.e. the reply's header.
func reversed(pkt []byte) []byte {
	r := bytes.Clone(pkt)
	swap := func(a, b, n int) {
		for i := range n {
			r[a+i], r[b+i] = r[b+i], r[a+i]
		}
	}
	switch r[0] >> 4 {
	case 4:
		swap(12, 16, 4)
		if ihl := int(r[0]&0x0f) * 4; len(r) >= ihl+4 {
			swap(ihl, ihl+2, 2)
		}
	case 6:
		swap(8, 24, 16)
		if len(r) >= 44 {
			swap(40, 42, 2)
		}
	}
	return r
}

func FuzzFlowHash(f *testing.F) {
	f.Add(tuntest.UDP(fa4, fb4, []byte("seed")))
	f.Add(tuntest.TCP(fa6, fb6, 1, 2, tuntest.TCPAck, nil))
	f.Add(tuntest.ICMPEcho(fa4.Addr(), fb4.Addr(), false, 1, 1, nil))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		h, ok := FlowHash(pkt)
		if !ok {
			return
		}
		if q := queueFor(h, 4); q < 0 || q > 3 {
			t.Fatalf("queueFor = %d", q)
		}
		h2, ok2 := FlowHash(reversed(pkt))
		if !ok2 || h2 != h {
			t.Fatalf("reply hashes differently (%v, %x != %x)", ok2, h2, h)
		}
	})
}
