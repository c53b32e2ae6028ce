package ippacket

import (
	"bytes"
	"net/netip"
	"testing"
)

// FuzzParse: Parse never panics, and every accessor of an accepted packet
// stays within bounds and is self-consistent.
func FuzzParse(f *testing.F) {
	f.Add([]byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, quoted := range []bool{false, true} {
			p, err := parse(b, quoted)
			if err != nil {
				continue
			}
			if p.Len() > len(b) || !bytes.Equal(p.Bytes(), b[:p.Len()]) {
				t.Fatal("view is not a prefix of the input")
			}
			_ = p.Src()
			_ = p.Dst()
			_ = p.HopLimit()
			tu := p.Tuple()
			if tu.Src != p.Src() || tu.Dst != p.Dst() || tu.Proto != p.Protocol() {
				t.Fatal("tuple disagrees with accessors")
			}
			if p.HasL4() && (p.Protocol() == ProtoTCP || p.Protocol() == ProtoUDP) && (tu.SrcPort != p.SrcPort() || tu.DstPort != p.DstPort()) {
				t.Fatal("tuple ports disagree")
			}
			_ = p.FlowHash(1)
			_ = p.ICMPType()
			_ = p.ICMPCode()
			_, _ = p.ICMPEchoID()
			_ = p.ChecksumsValid()
			_, _, _ = p.P2PControl()
			if len(p.Payload()) != p.Len()-p.L4Offset() {
				t.Fatal("payload length")
			}
			if q, err := p.ICMPErrorQuote(); err == nil {
				_ = q.Tuple()
			}
			dst := make([]byte, MaxICMPv6ErrorLen)
			if n, err := BuildUnreachable(dst, p, Prohibited, netip.Addr{}); err == nil {
				e, err := Parse(dst[:n])
				if err != nil {
					t.Fatalf("built ICMP error does not parse: %v", err)
				}
				if !e.ChecksumsValid() || !e.IsICMPError() || e.Dst() != p.Src() {
					t.Fatal("built ICMP error is wrong")
				}
				if n2, err := BuildPacketTooBig(dst, p, 1280, netip.Addr{}); err != nil || n2 != n {
					t.Fatalf("packet-too-big: %v", err)
				}
				if e, err := Parse(dst[:n]); err != nil || !e.ChecksumsValid() {
					t.Fatal("built packet-too-big is wrong")
				}
			}
		}
	})
}

// FuzzRewrite: rewriting addresses and ports of a packet with valid
// checksums keeps them valid, changes exactly the requested fields, and
// never panics on anything Parse accepted.
func FuzzRewrite(f *testing.F) {
	f.Add([]byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}, []byte{10, 0, 0, 1}, uint16(1), uint16(2))
	f.Fuzz(func(t *testing.T, b []byte, addr []byte, sport, dport uint16) {
		var a netip.Addr
		switch len(addr) {
		case 4:
			a = netip.AddrFrom4([4]byte(addr))
		case 16:
			a = netip.AddrFrom16([16]byte(addr))
		default:
			return
		}
		for _, quoted := range []bool{false, true} {
			buf := bytes.Clone(b)
			p, err := parse(buf, quoted)
			if err != nil {
				continue
			}
			valid := p.ChecksumsValid()
			before := p.Tuple()
			errS := p.SetSrc(a)
			errD := p.SetDst(a)
			familyOK := (p.Is4() && a.Unmap().Is4()) || (!p.Is4() && a.Is6() && !a.Is4In6())
			if familyOK != (errS == nil) || familyOK != (errD == nil) {
				t.Fatalf("family handling: %v %v", errS, errD)
			}
			errSP := p.SetSrcPort(sport)
			_ = p.SetDstPort(dport)
			_ = p.SetICMPEchoID(sport)
			q, err := parse(buf, quoted)
			if err != nil {
				t.Fatalf("rewritten packet no longer parses: %v", err)
			}
			after := q.Tuple()
			if familyOK && (after.Src != a.Unmap() && after.Src != a || after.Dst != after.Src) {
				t.Fatalf("addresses not rewritten: %v", after)
			}
			if !familyOK && (after.Src != before.Src || after.Dst != before.Dst) {
				t.Fatal("failed rewrite changed addresses")
			}
			if errSP == nil && (after.SrcPort != sport || after.DstPort != dport) {
				t.Fatal("ports not rewritten")
			}
			if after.Proto != before.Proto {
				t.Fatal("protocol changed")
			}
			if valid && !quoted && !q.ChecksumsValid() {
				t.Fatal("rewrite broke valid checksums")
			}
		}
	})
}
