package acl

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/gozone/gozone/connlib/ippacket"
)

func ap(s string) netip.Addr    { return netip.MustParseAddr(s) }
func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func cid(n byte) ClientID       { return ClientID{0: 0xc, 15: n} }
func rsc(n byte) ResourceID     { return ResourceID{0: 0xe, 15: n} }
func tcpF(lo, hi uint16) Filter { return Filter{Protocol: TCP, PortStart: lo, PortEnd: hi} }
func udpF(lo, hi uint16) Filter { return Filter{Protocol: UDP, PortStart: lo, PortEnd: hi} }
func icmpF() Filter             { return Filter{Protocol: ICMP} }

// pkt builds a minimal valid packet (checksums are not needed here).
// proto: "tcp", "udp", "icmp" (echo request with id = dport), "gre".
func pkt(t testing.TB, proto string, src, dst netip.Addr, sport, dport uint16) ippacket.Packet {
	t.Helper()
	var l4 []byte
	var num uint8
	switch proto {
	case "tcp":
		l4 = make([]byte, 20)
		l4[12] = 5 << 4
		num = ippacket.ProtoTCP
	case "udp":
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4[4:], 8)
		num = ippacket.ProtoUDP
	case "icmp":
		l4 = make([]byte, 8)
		if src.Is4() {
			l4[0], num = 8, ippacket.ProtoICMP
		} else {
			l4[0], num = 128, ippacket.ProtoICMPv6
		}
		binary.BigEndian.PutUint16(l4[4:], dport)
	case "icmpreply":
		l4 = make([]byte, 8)
		if src.Is4() {
			l4[0], num = 0, ippacket.ProtoICMP
		} else {
			l4[0], num = 129, ippacket.ProtoICMPv6
		}
		binary.BigEndian.PutUint16(l4[4:], dport)
	case "icmperr":
		l4 = make([]byte, 8)
		if src.Is4() {
			l4[0], l4[1], num = 3, 1, ippacket.ProtoICMP
		} else {
			l4[0], l4[1], num = 1, 3, ippacket.ProtoICMPv6
		}
	case "gre":
		l4, num = []byte{0, 0, 8, 0}, 47
	default:
		t.Fatalf("proto %q", proto)
	}
	if proto == "tcp" || proto == "udp" {
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
	}
	var b []byte
	if src.Is4() {
		b = make([]byte, 20+len(l4))
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		b[8], b[9] = 64, num
		s, d := src.As4(), dst.As4()
		copy(b[12:], s[:])
		copy(b[16:], d[:])
		copy(b[20:], l4)
	} else {
		b = make([]byte, 40+len(l4))
		b[0] = 0x60
		binary.BigEndian.PutUint16(b[4:], uint16(len(l4)))
		b[6], b[7] = num, 64
		s, d := src.As16(), dst.As16()
		copy(b[8:], s[:])
		copy(b[24:], d[:])
		copy(b[40:], l4)
	}
	p, err := ippacket.Parse(b)
	if err != nil {
		t.Fatalf("test packet: %v", err)
	}
	return p
}
