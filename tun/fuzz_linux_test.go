//go:build linux

package tun

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/gozone/gozone/internal/netns"
)

// FuzzLinuxSend feeds arbitrary packet batches to Send on real devices
// (with offloads, where wireguard-go's GRO coalesces them, and without) in
// a private namespace. data is cut into parts equal pieces, each one packet;
// IP and TCP/UDP checksums are fixed up first so that the coalescing paths
// (which skip packets with bad checksums) are reached. Send must never
// panic, fail or claim more packets than it was given; what the kernel does
// with the packets is not checked. Needs root.
func FuzzLinuxSend(f *testing.F) {
	netns.RequireRoot(f)
	ns := netns.New(f, "fz")
	devs := []*LinuxTun{
		createIn(f, ns, LinuxConfig{
			Addrs:  []netip.Prefix{netip.PrefixFrom(tunLocal4, 32), netip.PrefixFrom(tunLocal6, 128)},
			Routes: []netip.Prefix{netip.MustParsePrefix("10.201.0.0/16"), netip.MustParsePrefix("fd21::/64")},
		}),
		createIn(f, ns, LinuxConfig{DisableOffloads: true}),
		createIn(f, ns, LinuxConfig{Queues: 2}),
	}
	udpIn(f, ns, netip.AddrPortFrom(tunLocal4, 7000))
	f.Add([]byte("\x45\x00\x00\x14"), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, parts uint8) {
		k := 1 + int(parts%8)
		if len(data) < k {
			k = 1
		}
		size := len(data) / k
		for _, d := range devs {
			bufs := make([][]byte, k)
			for i := range k {
				end := (i + 1) * size
				if i == k-1 {
					end = len(data)
				}
				p := data[i*size : end]
				b := make([]byte, hdrRoom+len(p), hdrRoom+65535)
				copy(b[hdrRoom:], p)
				fixChecksums(b[hdrRoom:])
				bufs[i] = b
			}
			n, err := d.Send(bufs, hdrRoom)
			if err != nil || n < 0 || n > k {
				t.Fatalf("Send(%d packets) = %d, %v", k, n, err)
			}
		}
	})
}

// fixChecksums rewrites the IPv4 header checksum and the TCP/UDP checksum
// of pkt where its headers are long enough; it never panics.
func fixChecksums(pkt []byte) {
	if len(pkt) < 1 {
		return
	}
	var l4 []byte
	var proto byte
	var pseudo uint32
	switch pkt[0] >> 4 {
	case 4:
		ihl := int(pkt[0]&0x0f) * 4
		if ihl < 20 || len(pkt) < ihl {
			return
		}
		pkt[10], pkt[11] = 0, 0
		binary.BigEndian.PutUint16(pkt[10:], ^fold(sum16(0, pkt[:ihl])))
		proto, l4 = pkt[9], pkt[ihl:]
		pseudo = sum16(0, pkt[12:20])
	case 6:
		if len(pkt) < 40 {
			return
		}
		proto, l4 = pkt[6], pkt[40:]
		pseudo = sum16(0, pkt[8:40])
	default:
		return
	}
	at := map[byte]int{6: 16, 17: 6}[proto]
	if at == 0 || len(l4) < at+2 {
		return
	}
	l4[at], l4[at+1] = 0, 0
	s := pseudo + uint32(proto) + uint32(len(l4))
	c := ^fold(sum16(s, l4))
	if proto == 17 && c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[at:], c)
}

func sum16(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}
