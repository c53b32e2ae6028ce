package tuntest

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

var (
	v4a = netip.MustParseAddrPort("10.0.0.1:1234")
	v4b = netip.MustParseAddrPort("10.0.0.2:80")
	v6a = netip.MustParseAddrPort("[fd00::1]:1234")
	v6b = netip.MustParseAddrPort("[fd00::2]:80")
)

// TestChecksumsAgainstGVisor checks the builders' checksums with an
// independent implementation.
func TestChecksumsAgainstGVisor(t *testing.T) {
	for _, size := range []int{0, 1, 2, 3, 100, 1001} {
		payload := bytes.Repeat([]byte{0xab, 0x01, 0xff}, size)[:size]
		for _, pair := range [][2]netip.AddrPort{{v4a, v4b}, {v6a, v6b}} {
			src, dst := pair[0], pair[1]
			hl := IPHeaderLen(src.Addr())
			ts, td := tcpip.AddrFromSlice(src.Addr().AsSlice()), tcpip.AddrFromSlice(dst.Addr().AsSlice())

			u := UDP(src, dst, payload)
			if src.Addr().Is4() && !header.IPv4(u).IsChecksumValid() {
				t.Errorf("UDP %v size %d: bad IPv4 header checksum", src, size)
			}
			uh := header.UDP(u[hl:])
			if !uh.IsChecksumValid(ts, td, checksum.Checksum(uh.Payload(), 0)) {
				t.Errorf("UDP %v size %d: bad UDP checksum", src, size)
			}

			tc := TCP(src, dst, 7, 9, TCPAck|TCPPsh, payload)
			th := header.TCP(tc[hl:])
			if !th.IsChecksumValid(ts, td, checksum.Checksum(th.Payload(), 0), uint16(len(payload))) {
				t.Errorf("TCP %v size %d: bad TCP checksum", src, size)
			}

			ic := ICMPEcho(src.Addr(), dst.Addr(), false, 1, 2, payload)
			if src.Addr().Is4() {
				if checksum.Checksum(ic[hl:], 0) != 0xffff {
					t.Errorf("ICMPv4 size %d: bad checksum", size)
				}
			} else {
				ih := header.ICMPv6(ic[hl:])
				want := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
					Header: ih[:header.ICMPv6HeaderSize], Src: ts, Dst: td,
					PayloadCsum: checksum.Checksum(ih[header.ICMPv6HeaderSize:], 0),
					PayloadLen:  len(ih) - header.ICMPv6HeaderSize,
				})
				if ih.Checksum() != want {
					t.Errorf("ICMPv6 size %d: checksum %#x, want %#x", size, ih.Checksum(), want)
				}
			}
		}
	}
}

func TestParseRoundTrip(t *testing.T) {
	payload := []byte("hello, tunnel")
	for _, pair := range [][2]netip.AddrPort{{v4a, v4b}, {v6a, v6b}} {
		src, dst := pair[0], pair[1]
		p, err := Parse(UDP(src, dst, payload))
		if err != nil || p.Proto != ProtoUDP || p.Src != src || p.Dst != dst || string(p.Payload) != string(payload) {
			t.Errorf("UDP: %+v, %v", p, err)
		}
		p, err = Parse(TCP(src, dst, 5, 6, TCPSyn, payload))
		if err != nil || p.Proto != ProtoTCP || p.TCPSeq != 5 || p.TCPAck != 6 || p.TCPFlags != TCPSyn || string(p.Payload) != string(payload) {
			t.Errorf("TCP: %+v, %v", p, err)
		}
		p, err = Parse(ICMPEcho(src.Addr(), dst.Addr(), true, 3, 4, payload))
		if err != nil || !p.IsEchoReply() || p.IsEchoRequest() || p.ICMPID != 3 || p.ICMPSeq != 4 || string(p.Payload) != string(payload) {
			t.Errorf("ICMP: %+v, %v", p, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	good := UDP(v4a, v4b, []byte("payload"))
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x10
		return b
	}
	cases := []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"version", append([]byte{0x50}, good[1:]...), ErrVersion},
		{"truncated", good[:len(good)-1], ErrLength},
		{"ip checksum", flip(8), ErrChecksum},
		{"udp checksum", flip(len(good) - 1), ErrChecksum},
		{"v6 short", UDP(v6a, v6b, nil)[:30], ErrShort},
		{"v6 payload corrupt", func() []byte { b := UDP(v6a, v6b, []byte("x")); b[len(b)-1] ^= 1; return b }(), ErrChecksum},
	}
	for _, c := range cases {
		if _, err := Parse(c.pkt); !errors.Is(err, c.want) {
			t.Errorf("%s: Parse error %v, want %v", c.name, err, c.want)
		}
	}
}

func TestPayloadMarker(t *testing.T) {
	p := make([]byte, 100)
	fillPayload(p, 1, 2, 3)
	if flow, seq, ours, err := readPayload(p, 1); !ours || err != nil || flow != 2 || seq != 3 {
		t.Fatalf("readPayload = %d %d %v %v", flow, seq, ours, err)
	}
	if _, _, ours, _ := readPayload(p, 9); ours {
		t.Error("payload of another run taken as ours")
	}
	p[50] ^= 1
	if _, _, ours, err := readPayload(p, 1); !ours || err == nil {
		t.Error("corrupted payload not detected")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(UDP(v4a, v4b, []byte("x")))
	f.Add(TCP(v6a, v6b, 1, 2, TCPSyn, nil))
	f.Add(ICMPEcho(v4a.Addr(), v4b.Addr(), false, 1, 1, []byte("ping")))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		p, err := Parse(pkt)
		if err == nil && (p.Len != len(pkt) || len(p.Payload) > len(pkt)) {
			t.Fatalf("inconsistent parse: %+v for %d bytes", p, len(pkt))
		}
	})
}
