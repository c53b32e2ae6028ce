package ippacket

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

var (
	c4, r4 = ap("100.64.0.1"), ap("10.0.0.5")
	c6, r6 = ap("fd00:2021:1111::1"), ap("2001:db8::5")
)

func TestParseValid(t *testing.T) {
	type want struct {
		ver             int
		src, dst        netip.Addr
		proto           uint8
		hasL4           bool
		sport, dport    uint16
		icmpType, code  uint8
		echoID          uint16
		echo, icmpErr   bool
		frag, laterFrag bool
	}
	cases := []struct {
		name string
		b    []byte
		w    want
	}{
		{"tcp4", mk(t, c4, r4, ProtoTCP, tcpSeg(40000, 443, []byte("hi"))),
			want{ver: 4, src: c4, dst: r4, proto: ProtoTCP, hasL4: true, sport: 40000, dport: 443}},
		{"udp4", mk(t, c4, r4, ProtoUDP, udpSeg(5353, 53, []byte("q"))),
			want{ver: 4, src: c4, dst: r4, proto: ProtoUDP, hasL4: true, sport: 5353, dport: 53}},
		{"icmp4 echo", mk(t, c4, r4, ProtoICMP, icmpMsg(8, 0, 77, 1, nil)),
			want{ver: 4, src: c4, dst: r4, proto: ProtoICMP, hasL4: true, icmpType: 8, echoID: 77, echo: true}},
		{"icmp4 echo reply", mk(t, r4, c4, ProtoICMP, icmpMsg(0, 0, 77, 1, nil)),
			want{ver: 4, src: r4, dst: c4, proto: ProtoICMP, hasL4: true, icmpType: 0, echoID: 77, echo: true}},
		{"icmp4 unreachable", mk(t, r4, c4, ProtoICMP, icmpMsg(3, 1, 0, 0, nil)),
			want{ver: 4, src: r4, dst: c4, proto: ProtoICMP, hasL4: true, icmpType: 3, code: 1, icmpErr: true}},
		{"tcp4 with options", func() []byte {
			b := mk(t, c4, r4, ProtoTCP, tcpSeg(7, 8, nil))
			// Insert 4 bytes of options (NOP NOP NOP EOL) and fix the header.
			o := append(append(append([]byte{}, b[:20]...), 1, 1, 1, 0), b[20:]...)
			o[0] = 0x46
			binary.BigEndian.PutUint16(o[2:], uint16(len(o)))
			mustParse(t, o).FixChecksums()
			return o
		}(), want{ver: 4, src: c4, dst: r4, proto: ProtoTCP, hasL4: true, sport: 7, dport: 8}},
		{"gre4 other", mk(t, c4, r4, 47, []byte{1, 2, 3}),
			want{ver: 4, src: c4, dst: r4, proto: 47}},
		{"tcp6", mk(t, c6, r6, ProtoTCP, tcpSeg(1, 2, nil)),
			want{ver: 6, src: c6, dst: r6, proto: ProtoTCP, hasL4: true, sport: 1, dport: 2}},
		{"udp6 via hbh+destopts", mk(t, c6, r6, ProtoUDP, udpSeg(9, 10, []byte("x")), hopByHop(), destOpts()),
			want{ver: 6, src: c6, dst: r6, proto: ProtoUDP, hasL4: true, sport: 9, dport: 10}},
		{"icmp6 echo", mk(t, c6, r6, ProtoICMPv6, icmpMsg(128, 0, 9, 9, []byte("ping"))),
			want{ver: 6, src: c6, dst: r6, proto: ProtoICMPv6, hasL4: true, icmpType: 128, echoID: 9, echo: true}},
		{"icmp6 error", mk(t, r6, c6, ProtoICMPv6, icmpMsg(1, 3, 0, 0, nil)),
			want{ver: 6, src: r6, dst: c6, proto: ProtoICMPv6, hasL4: true, icmpType: 1, code: 3, icmpErr: true}},
		{"udp6 first fragment", mk(t, c6, r6, ProtoUDP, udpSeg(9, 10, make([]byte, 16)), fragHdr(0, true)),
			want{ver: 6, src: c6, dst: r6, proto: ProtoUDP, hasL4: true, sport: 9, dport: 10, frag: true}},
		{"udp6 later fragment", mk(t, c6, r6, ProtoUDP, []byte{1, 2, 3}, fragHdr(3, false)),
			want{ver: 6, src: c6, dst: r6, proto: ProtoUDP, frag: true, laterFrag: true}},
		{"esp6 other", mk(t, c6, r6, 50, []byte{1, 2, 3, 4}),
			want{ver: 6, src: c6, dst: r6, proto: 50}},
		{"icmpv4 inside ipv6 is other", mk(t, c6, r6, ProtoICMP, icmpMsg(8, 0, 1, 1, nil)),
			want{ver: 6, src: c6, dst: r6, proto: ProtoICMP}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := mustParse(t, c.b)
			w := c.w
			if p.Version() != w.ver || p.Src() != w.src || p.Dst() != w.dst || p.Protocol() != w.proto {
				t.Fatalf("got v%d %v→%v proto %d", p.Version(), p.Src(), p.Dst(), p.Protocol())
			}
			if p.HasL4() != w.hasL4 || p.SrcPort() != w.sport || p.DstPort() != w.dport {
				t.Fatalf("got hasL4 %v ports %d→%d", p.HasL4(), p.SrcPort(), p.DstPort())
			}
			if p.ICMPType() != w.icmpType || p.ICMPCode() != w.code || p.IsICMPEcho() != w.echo || p.IsICMPError() != w.icmpErr {
				t.Fatalf("got icmp %d/%d echo %v err %v", p.ICMPType(), p.ICMPCode(), p.IsICMPEcho(), p.IsICMPError())
			}
			if id, ok := p.ICMPEchoID(); ok != w.echo || id != w.echoID {
				t.Fatalf("echo id %d %v", id, ok)
			}
			if p.IsFragment() != w.frag || p.IsLaterFragment() != w.laterFrag {
				t.Fatalf("frag %v later %v", p.IsFragment(), p.IsLaterFragment())
			}
			if p.Len() != len(c.b) || !p.ChecksumsValid() {
				t.Fatalf("len %d checksums valid %v", p.Len(), p.ChecksumsValid())
			}
		})
	}
}

func TestParseTrimsTrailingBytes(t *testing.T) {
	b := mk(t, c4, r4, ProtoUDP, udpSeg(1, 2, []byte("abc")))
	n := len(b)
	b = append(b, 0xde, 0xad)
	p := mustParse(t, b)
	if p.Len() != n || len(p.Payload()) != 11 {
		t.Fatalf("len %d payload %d", p.Len(), len(p.Payload()))
	}
}

func TestParseErrors(t *testing.T) {
	tcp4 := mk(t, c4, r4, ProtoTCP, tcpSeg(1, 2, nil))
	udp6 := mk(t, c6, r6, ProtoUDP, udpSeg(1, 2, nil))
	mod := func(b []byte, f func([]byte)) []byte {
		c := bytes.Clone(b)
		f(c)
		return c
	}
	cases := []struct {
		name string
		b    []byte
		err  error
	}{
		{"empty", nil, ErrTooShort},
		{"short v4", tcp4[:19], ErrTooShort},
		{"short v6", udp6[:39], ErrTooShort},
		{"version 5", mod(tcp4, func(b []byte) { b[0] = 0x55 }), ErrVersion},
		{"ihl 4", mod(tcp4, func(b []byte) { b[0] = 0x44 }), ErrHeaderLength},
		{"ihl beyond buffer", mod(tcp4, func(b []byte) { b[0] = 0x4f })[:40], ErrHeaderLength},
		{"total < ihl", mod(tcp4, func(b []byte) { binary.BigEndian.PutUint16(b[2:], 10) }), ErrTotalLength},
		{"total > buffer", tcp4[:len(tcp4)-1], ErrTotalLength},
		{"v6 payload > buffer", udp6[:len(udp6)-1], ErrTotalLength},
		{"v6 jumbo", mod(mk(t, c6, r6, ProtoUDP, udpSeg(1, 2, nil), hopByHop()), func(b []byte) { binary.BigEndian.PutUint16(b[4:], 0) }), ErrTotalLength},
		{"v6 payload length 0 with tcp", mod(mk(t, c6, r6, ProtoTCP, tcpSeg(1, 2, nil)), func(b []byte) { binary.BigEndian.PutUint16(b[4:], 0) }), ErrTruncatedL4},
		{"tcp data offset too big", mod(tcp4, func(b []byte) { b[20+12] = 0xf0 }), ErrTruncatedL4},
		{"tcp data offset too small", mod(tcp4, func(b []byte) { b[20+12] = 0x40 }), ErrTruncatedL4},
		{"tcp truncated", mk(t, c4, r4, ProtoTCP, make([]byte, 19)), ErrTruncatedL4},
		{"udp truncated", mk(t, c4, r4, ProtoUDP, make([]byte, 7)), ErrTruncatedL4},
		{"udp length > segment", mod(udp6, func(b []byte) { b[40+5] = 200 }), ErrTruncatedL4},
		{"icmp truncated", mk(t, c4, r4, ProtoICMP, make([]byte, 7)), ErrTruncatedL4},
		{"ext header truncated", mk(t, c6, r6, 0, []byte{17, 5}), ErrExtHeaders},
		{"ext header chain too long", mk(t, c6, r6, ProtoUDP, udpSeg(1, 2, nil),
			hopByHop(), destOpts(), destOpts(), destOpts(), destOpts(), destOpts(), destOpts(), destOpts(), destOpts(), destOpts()), ErrExtHeaders},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.b)
			if !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
		})
	}
}

func TestTupleAndReverse(t *testing.T) {
	req := mustParse(t, mk(t, c4, r4, ProtoICMP, icmpMsg(8, 0, 4242, 1, nil)))
	rep := mustParse(t, mk(t, r4, c4, ProtoICMP, icmpMsg(0, 0, 4242, 1, nil)))
	if req.Tuple().Reverse() != rep.Tuple() {
		t.Fatalf("echo tuples: %+v vs %+v", req.Tuple(), rep.Tuple())
	}
	out := mustParse(t, mk(t, c6, r6, ProtoTCP, tcpSeg(5000, 22, nil)))
	in := mustParse(t, mk(t, r6, c6, ProtoTCP, tcpSeg(22, 5000, nil)))
	if out.Tuple().Reverse() != in.Tuple() || out.Tuple() == in.Tuple() {
		t.Fatal("tcp tuples do not reverse")
	}
	want := FiveTuple{Src: c6, Dst: r6, SrcPort: 5000, DstPort: 22, Proto: ProtoTCP}
	if out.Tuple() != want {
		t.Fatalf("tuple %+v", out.Tuple())
	}
	m := map[FiveTuple]int{out.Tuple(): 1}
	if m[in.Tuple().Reverse()] != 1 {
		t.Fatal("map lookup by tuple failed")
	}
	other := mustParse(t, mk(t, c4, r4, 47, []byte{1}))
	if tu := other.Tuple(); tu.SrcPort != 0 || tu.DstPort != 0 || tu.Proto != 47 {
		t.Fatalf("other tuple %+v", tu)
	}
}

func TestFlowHash(t *testing.T) {
	a := mustParse(t, mk(t, c4, r4, ProtoTCP, tcpSeg(1000, 80, []byte("a"))))
	a2 := mustParse(t, mk(t, c4, r4, ProtoTCP, tcpSeg(1000, 80, []byte("different payload"))))
	b := mustParse(t, mk(t, c4, r4, ProtoTCP, tcpSeg(1001, 80, nil)))
	if a.FlowHash(1) != a2.FlowHash(1) {
		t.Fatal("same flow, different hash")
	}
	if a.FlowHash(1) == b.FlowHash(1) || a.FlowHash(1) == a.FlowHash(2) {
		t.Fatal("hash ignores port or seed")
	}
	// Non-port protocols hash by address pair: fragments of one datagram agree.
	f1 := mustParse(t, mk(t, c6, r6, ProtoUDP, udpSeg(9, 10, make([]byte, 16)), fragHdr(0, true)))
	f2 := mustParse(t, mk(t, c6, r6, ProtoUDP, []byte{1, 2, 3}, fragHdr(3, false)))
	if f1.FlowHash(7) == f2.FlowHash(7) {
		// The first fragment has ports, the later one doesn't: they may differ,
		// but the later-fragment hash must equal the address-pair hash.
		t.Log("first and later fragment hash equal (allowed)")
	}
	g := mustParse(t, mk(t, c6, r6, ProtoUDP, []byte{9, 9}, fragHdr(5, false)))
	if f2.FlowHash(7) != g.FlowHash(7) {
		t.Fatal("later fragments of one address pair hash differently")
	}
	// Spread: 4096 source ports over 16 buckets, none empty or > 3x mean.
	var buckets [16]int
	for port := 0; port < 4096; port++ {
		p := mustParse(t, mk(t, c4, r4, ProtoUDP, udpSeg(uint16(port), 53, nil)))
		buckets[p.FlowHash(99)%16]++
		if p.FlowHash(99) != p.Tuple().Hash(99) && false {
			t.Fatal("unreachable")
		}
	}
	for i, n := range buckets {
		if n == 0 || n > 3*4096/16 {
			t.Fatalf("bucket %d has %d of 4096", i, n)
		}
	}
	if a.Tuple().Hash(5) == b.Tuple().Hash(5) || a.Tuple().Hash(5) != a2.Tuple().Hash(5) {
		t.Fatal("FiveTuple.Hash")
	}
}

func TestP2PControl(t *testing.T) {
	buf := make([]byte, 200)
	payload := []byte(`{"resource":"x"}`)
	n, err := BuildP2PControl(buf, P2PAssignedIPs, payload)
	if err != nil {
		t.Fatal(err)
	}
	p := mustParse(t, buf[:n])
	ev, pl, ok := p.P2PControl()
	if !ok || ev != P2PAssignedIPs || !bytes.Equal(pl, payload) {
		t.Fatalf("control %v %d %q", ok, ev, pl)
	}
	if _, _, ok := mustParse(t, mk(t, c6, r6, 0xff, make([]byte, 8))).P2PControl(); ok {
		t.Fatal("non-zero addresses accepted as control packet")
	}
	if _, err := BuildP2PControl(buf[:40], 2, nil); !errors.Is(err, ErrShortBuffer) {
		t.Fatal("short buffer accepted")
	}
}

func TestParseAllocs(t *testing.T) {
	b4 := mk(t, c4, r4, ProtoTCP, tcpSeg(1, 2, nil))
	b6 := mk(t, c6, r6, ProtoUDP, udpSeg(1, 2, nil), hopByHop())
	var sink uint64
	n := testing.AllocsPerRun(1000, func() {
		for _, b := range [][]byte{b4, b6} {
			p, err := Parse(b)
			if err != nil {
				panic(err)
			}
			tu := p.Tuple()
			sink += uint64(tu.SrcPort) + p.FlowHash(1) + tu.Hash(2)
			if p.Src() == p.Dst() {
				sink++
			}
		}
	})
	if n != 0 {
		t.Fatalf("Parse+Tuple+FlowHash allocate %v times", n)
	}
	_ = sink
}

func BenchmarkParse(b *testing.B) {
	pk4 := mk(b, c4, r4, ProtoTCP, tcpSeg(1, 2, make([]byte, 1200)))
	pk6 := mk(b, c6, r6, ProtoUDP, udpSeg(1, 2, make([]byte, 1200)))
	for _, c := range []struct {
		name string
		b    []byte
	}{{"v4tcp", pk4}, {"v6udp", pk6}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var sink uint64
			for i := 0; i < b.N; i++ {
				p, _ := Parse(c.b)
				sink += p.FlowHash(1)
			}
			_ = sink
		})
	}
}

func BenchmarkTuple(b *testing.B) {
	p := mustParse(b, mk(b, c6, r6, ProtoTCP, tcpSeg(1, 2, nil)))
	b.ReportAllocs()
	m := map[FiveTuple]int{p.Tuple(): 1}
	var sink int
	for i := 0; i < b.N; i++ {
		sink += m[p.Tuple()]
	}
	_ = sink
}
