package ippacket

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

func TestBuildUnreachable(t *testing.T) {
	big := make([]byte, 1400)
	for i := range big {
		big[i] = byte(i)
	}
	cases := []struct {
		name       string
		orig       []byte
		kind       Unreachable
		typ, code  uint8
		wantLen    int
		quotedFull bool
	}{
		{"v4 prohibited", mk(t, c4, r4, ProtoTCP, tcpSeg(1000, 22, []byte("x"))), Prohibited, 3, 13, 20 + 8 + 41, true},
		{"v4 host", mk(t, c4, r4, ProtoUDP, udpSeg(1000, 53, nil)), HostUnreachable, 3, 1, 20 + 8 + 28, true},
		{"v4 net", mk(t, c4, r4, ProtoICMP, icmpMsg(8, 0, 1, 1, nil)), NetUnreachable, 3, 0, 20 + 8 + 28, true},
		{"v4 big quotes to 576", mk(t, c4, r4, ProtoUDP, udpSeg(1, 2, big[:1200])), Prohibited, 3, 13, 576, false},
		{"v6 prohibited", mk(t, c6, r6, ProtoTCP, tcpSeg(1000, 22, nil)), Prohibited, 1, 1, 40 + 8 + 60, true},
		{"v6 address", mk(t, c6, r6, ProtoUDP, udpSeg(1000, 53, []byte("q"))), HostUnreachable, 1, 3, 40 + 8 + 49, true},
		{"v6 net", mk(t, c6, r6, ProtoICMPv6, icmpMsg(128, 0, 1, 1, nil)), NetUnreachable, 1, 0, 40 + 8 + 48, true},
		{"v6 big quotes to 1280", mk(t, c6, r6, ProtoUDP, udpSeg(1, 2, big[:1300])), Prohibited, 1, 1, 1280, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			orig := mustParse(t, c.orig)
			dst := make([]byte, 1500)
			if ICMPErrorLen(orig) != c.wantLen {
				t.Fatalf("ICMPErrorLen %d, want %d", ICMPErrorLen(orig), c.wantLen)
			}
			n, err := BuildUnreachable(dst, orig, c.kind, netip.Addr{})
			if err != nil {
				t.Fatal(err)
			}
			if n != c.wantLen {
				t.Fatalf("len %d, want %d", n, c.wantLen)
			}
			e := mustParse(t, dst[:n])
			if e.Src() != orig.Dst() || e.Dst() != orig.Src() {
				t.Fatalf("addresses %v→%v", e.Src(), e.Dst())
			}
			if !e.IsICMPError() || e.ICMPType() != c.typ || e.ICMPCode() != c.code {
				t.Fatalf("type/code %d/%d", e.ICMPType(), e.ICMPCode())
			}
			if !oracleValid(t, e) || !e.ChecksumsValid() {
				t.Fatal("invalid checksums")
			}
			quote := e.Payload()[8:]
			if !bytes.Equal(quote, c.orig[:len(quote)]) || (c.quotedFull && len(quote) != len(c.orig)) {
				t.Fatal("quote is not the original's prefix")
			}
			q, err := e.ICMPErrorQuote()
			if err != nil {
				t.Fatal(err)
			}
			if q.Tuple() != orig.Tuple() {
				t.Fatalf("quoted tuple %+v, want %+v", q.Tuple(), orig.Tuple())
			}
		})
	}
}

func TestBuildUnreachableRefusals(t *testing.T) {
	dst := make([]byte, 1500)
	icmpErr := mustParse(t, mk(t, r4, c4, ProtoICMP, icmpMsg(3, 1, 0, 0, nil)))
	later := mustParse(t, mk(t, c6, r6, ProtoUDP, []byte{1, 2, 3}, fragHdr(3, false)))
	mcast := mustParse(t, mk(t, c4, ap("224.0.0.1"), ProtoUDP, udpSeg(1, 2, nil)))
	bcast := mustParse(t, mk(t, c4, ap("255.255.255.255"), ProtoUDP, udpSeg(1, 2, nil)))
	unspec := mustParse(t, mk(t, ap("::"), r6, ProtoUDP, udpSeg(1, 2, nil)))
	for name, p := range map[string]Packet{"icmp error": icmpErr, "later fragment": later, "multicast": mcast, "broadcast": bcast, "unspecified src": unspec} {
		if _, err := BuildUnreachable(dst, p, Prohibited, netip.Addr{}); !errors.Is(err, ErrNoICMPError) {
			t.Errorf("%s: err %v", name, err)
		}
	}
	ok := mustParse(t, mk(t, c4, r4, ProtoTCP, tcpSeg(1, 2, nil)))
	if _, err := BuildUnreachable(dst[:30], ok, Prohibited, netip.Addr{}); !errors.Is(err, ErrShortBuffer) {
		t.Errorf("short buffer: %v", err)
	}
	if _, err := BuildUnreachable(dst, ok, Prohibited, c6); !errors.Is(err, ErrInvalidSource) {
		t.Errorf("v6 source for v4 error: %v", err)
	}
	if _, err := BuildUnreachable(dst, Packet{}, Prohibited, netip.Addr{}); err == nil {
		t.Error("zero Packet accepted")
	}
	// Explicit source.
	gw := ap("100.64.0.254")
	n, err := BuildUnreachable(dst, ok, Prohibited, gw)
	if err != nil || mustParse(t, dst[:n]).Src() != gw {
		t.Fatalf("explicit source: %v", err)
	}
}

func TestQuoteRewriteAndFix(t *testing.T) {
	// The DNS-resource NAT must translate the packet quoted in an ICMP
	// error from the real IP back to the proxy IP.
	orig := mustParse(t, mk(t, c4, r4, ProtoUDP, udpSeg(5000, 53, []byte("query"))))
	buf := make([]byte, 600)
	n, err := BuildUnreachable(buf, orig, HostUnreachable, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	e := mustParse(t, buf[:n])
	q, err := e.ICMPErrorQuote()
	if err != nil {
		t.Fatal(err)
	}
	proxy := ap("100.96.0.7")
	if err := q.SetDst(proxy); err != nil {
		t.Fatal(err)
	}
	if err := e.SetSrc(proxy); err != nil {
		t.Fatal(err)
	}
	e.FixChecksums()
	if !oracleValid(t, e) {
		t.Fatal("outer checksum invalid after quote rewrite")
	}
	q2, _ := e.ICMPErrorQuote()
	if q2.Dst() != proxy || q2.DstPort() != 53 || !oracleValid(t, q2) {
		t.Fatal("quoted packet wrong after rewrite")
	}
}

func TestBuildUnreachableAllocs(t *testing.T) {
	orig := mustParse(t, mk(t, c6, r6, ProtoTCP, tcpSeg(1, 2, make([]byte, 100))))
	dst := make([]byte, 1280)
	n := testing.AllocsPerRun(1000, func() {
		if _, err := BuildUnreachable(dst, orig, Prohibited, netip.Addr{}); err != nil {
			panic(err)
		}
	})
	if n != 0 {
		t.Fatalf("BuildUnreachable allocates %v times", n)
	}
}

func BenchmarkBuildUnreachable(b *testing.B) {
	orig := mustParse(b, mk(b, c4, r4, ProtoTCP, tcpSeg(1, 2, make([]byte, 1200))))
	dst := make([]byte, 1280)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_, _ = BuildUnreachable(dst, orig, Prohibited, netip.Addr{})
	}
}

func TestBuildPacketTooBig(t *testing.T) {
	dst := make([]byte, 1500)
	for _, orig := range [][]byte{
		mk(t, c4, r4, ProtoTCP, tcpSeg(1, 2, make([]byte, 1400))),
		mk(t, c6, r6, ProtoUDP, udpSeg(1, 2, make([]byte, 1400))),
	} {
		o := mustParse(t, orig)
		n, err := BuildPacketTooBig(dst, o, 1280, netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		e := mustParse(t, dst[:n])
		if !oracleValid(t, e) || !e.IsICMPError() {
			t.Fatal("invalid packet-too-big")
		}
		pl := e.Payload()
		if o.Is4() {
			if pl[0] != 3 || pl[1] != 4 || binary.BigEndian.Uint16(pl[6:]) != 1280 {
				t.Fatalf("v4 frag-needed header % x", pl[:8])
			}
		} else if pl[0] != 2 || pl[1] != 0 || binary.BigEndian.Uint32(pl[4:]) != 1280 {
			t.Fatalf("v6 too-big header % x", pl[:8])
		}
	}
}
