package ippacket

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

func TestSumMatchesGVisor(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 2000; i++ {
		b := make([]byte, r.IntN(300))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		if i%7 == 0 {
			for j := range b {
				b[j] = 0xff
			}
		}
		if got, want := Fold(Sum(b, 0)), checksum.Checksum(b, 0); got != want && !(got == 0xffff && want == 0 || got == 0 && want == 0xffff) {
			t.Fatalf("len %d: Sum %#x, gVisor %#x", len(b), got, want)
		}
	}
}

func TestUpdateChecksum16(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < 5000; i++ {
		b := make([]byte, 2*(1+r.IntN(40)))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		hc := Checksum(b)
		w := 2 * r.IntN(len(b)/2)
		old := binary.BigEndian.Uint16(b[w:])
		nw := uint16(r.Uint32())
		if i%5 == 0 {
			nw = 0
		}
		binary.BigEndian.PutUint16(b[w:], nw)
		want := Checksum(b)
		got := UpdateChecksum16(hc, old, nw)
		// RFC 1624: the incremental result may differ from a full
		// recompute only in the ±0 representation.
		if got != want && !(got == 0 && want == 0xffff || got == 0xffff && want == 0) {
			t.Fatalf("update: got %#x want %#x", got, want)
		}
	}
}

func rewriteCases(t *testing.T) map[string][]byte {
	return map[string][]byte{
		"tcp4":     mk(t, c4, r4, ProtoTCP, tcpSeg(40000, 443, []byte("hello world"))),
		"udp4":     mk(t, c4, r4, ProtoUDP, udpSeg(5353, 53, []byte("query"))),
		"icmp4":    mk(t, c4, r4, ProtoICMP, icmpMsg(8, 0, 5, 6, []byte("ping"))),
		"tcp6":     mk(t, c6, r6, ProtoTCP, tcpSeg(40000, 443, []byte("hello world!"))),
		"udp6+ext": mk(t, c6, r6, ProtoUDP, udpSeg(5353, 53, []byte("q")), hopByHop()),
		"icmp6":    mk(t, c6, r6, ProtoICMPv6, icmpMsg(128, 0, 5, 6, []byte("ping6"))),
		"udp4 nocsum": func() []byte {
			b := mk(t, c4, r4, ProtoUDP, udpSeg(1, 2, []byte("z")))
			binary.BigEndian.PutUint16(b[26:], 0)
			return b
		}(),
	}
}

func TestRewriteKeepsChecksumsValid(t *testing.T) {
	for name, b := range rewriteCases(t) {
		t.Run(name, func(t *testing.T) {
			p := mustParse(t, b)
			var ns, nd netip.Addr
			if p.Is4() {
				ns, nd = ap("100.96.0.9"), ap("192.0.2.200")
			} else {
				ns, nd = ap("fd00:2021:1111:8000::9"), ap("2001:db8:ffff::1")
			}
			if err := p.SetSrc(ns); err != nil {
				t.Fatal(err)
			}
			if err := p.SetDst(nd); err != nil {
				t.Fatal(err)
			}
			if p.Src() != ns || p.Dst() != nd {
				t.Fatalf("addresses %v %v", p.Src(), p.Dst())
			}
			if p.hasPorts() {
				if err := p.SetSrcPort(1); err != nil {
					t.Fatal(err)
				}
				if err := p.SetDstPort(65535); err != nil {
					t.Fatal(err)
				}
				if p.SrcPort() != 1 || p.DstPort() != 65535 {
					t.Fatal("ports not rewritten")
				}
			} else if p.IsICMPEcho() {
				if err := p.SetICMPEchoID(0xbeef); err != nil {
					t.Fatal(err)
				}
				if id, _ := p.ICMPEchoID(); id != 0xbeef {
					t.Fatal("echo id not rewritten")
				}
			}
			if !oracleValid(t, p) || !p.ChecksumsValid() {
				t.Fatal("checksums invalid after rewrite")
			}
			if name == "udp4 nocsum" && binary.BigEndian.Uint16(p.Payload()[6:]) != 0 {
				t.Fatal("absent UDP checksum was filled in")
			}
			// Full recompute agrees.
			c := bytes.Clone(p.Bytes())
			mustParse(t, c).FixChecksums()
			if !oracleValid(t, mustParse(t, c)) {
				t.Fatal("FixChecksums produced invalid checksums")
			}
		})
	}
}

func TestRewriteErrors(t *testing.T) {
	p := mustParse(t, mk(t, c4, r4, ProtoICMP, icmpMsg(8, 0, 1, 1, nil)))
	if err := p.SetSrc(c6); !errors.Is(err, ErrFamily) {
		t.Fatalf("v6 into v4: %v", err)
	}
	if err := p.SetSrc(ap("::ffff:1.2.3.4")); err != nil || p.Src() != ap("1.2.3.4") {
		t.Fatalf("4in6 into v4: %v %v", err, p.Src())
	}
	if err := p.SetSrcPort(1); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("port on icmp: %v", err)
	}
	q := mustParse(t, mk(t, c6, r6, ProtoTCP, tcpSeg(1, 2, nil)))
	if err := q.SetDst(r4); !errors.Is(err, ErrFamily) {
		t.Fatalf("v4 into v6: %v", err)
	}
	if err := q.SetICMPEchoID(1); !errors.Is(err, ErrNotEcho) {
		t.Fatalf("echo id on tcp: %v", err)
	}
	if err := p.SetDst(netip.Addr{}); !errors.Is(err, ErrFamily) {
		t.Fatalf("zero addr: %v", err)
	}
}

func TestRewriteAllocs(t *testing.T) {
	b := mk(t, c4, r4, ProtoTCP, tcpSeg(40000, 443, []byte("hello")))
	b6 := mk(t, c6, r6, ProtoUDP, udpSeg(1, 2, []byte("hello")))
	a1, a2 := ap("100.96.0.1"), ap("10.0.0.5")
	a61, a62 := ap("fd00:2021:1111:8000::1"), ap("2001:db8::5")
	n := testing.AllocsPerRun(1000, func() {
		p, _ := Parse(b)
		_ = p.SetDst(a1)
		_ = p.SetDst(a2)
		_ = p.SetSrcPort(1)
		q, _ := Parse(b6)
		_ = q.SetSrc(a61)
		_ = q.SetSrc(a62)
	})
	if n != 0 {
		t.Fatalf("rewrite allocates %v times", n)
	}
	if !oracleValid(t, mustParse(t, b)) || !oracleValid(t, mustParse(t, b6)) {
		t.Fatal("checksums invalid after repeated rewrites")
	}
}

func BenchmarkRewriteDst(b *testing.B) {
	buf := mk(b, c4, r4, ProtoTCP, tcpSeg(40000, 443, make([]byte, 1200)))
	a1, a2 := ap("100.96.0.1"), ap("10.0.0.5")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		p, _ := Parse(buf)
		if i&1 == 0 {
			_ = p.SetDst(a1)
		} else {
			_ = p.SetDst(a2)
		}
	}
}

func BenchmarkChecksum1280(b *testing.B) {
	buf := make([]byte, 1280)
	b.SetBytes(1280)
	for i := 0; i < b.N; i++ {
		_ = Checksum(buf)
	}
}
