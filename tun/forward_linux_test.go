//go:build linux

package tun

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/gozone/gozone/internal/netns"
	"github.com/gozone/gozone/tun/tuntest"
)

// newHairpin makes a device in a namespace that forwards packets written
// to it for fwdNet4/6 straight back out of the same device: what Send
// writes (coalesced into a super packet) comes back through the kernel's
// TSO path to PollRecvMany (split again). This reaches the virtio read
// path with headers that follow from our own writes.
var (
	fwdSrc4 = netip.MustParseAddr("10.202.0.2")
	fwdDst4 = netip.MustParseAddr("10.201.0.9")
	fwdSrc6 = netip.MustParseAddr("fd22::2")
	fwdDst6 = netip.MustParseAddr("fd21::9")
)

func newHairpin(tb testing.TB, cfg LinuxConfig) *LinuxTun {
	tb.Helper()
	netns.RequireRoot(tb)
	ns := netns.New(tb, "hp")
	if err := ns.EnableForwarding(); err != nil {
		tb.Fatal(err)
	}
	cfg.Addrs = []netip.Prefix{netip.PrefixFrom(tunLocal4, 32), netip.PrefixFrom(tunLocal6, 128)}
	cfg.Routes = []netip.Prefix{
		netip.MustParsePrefix("10.201.0.0/16"), netip.MustParsePrefix("10.202.0.0/16"),
		netip.MustParsePrefix("fd21::/64"), netip.MustParsePrefix("fd22::/64"),
	}
	for _, k := range []string{"net.ipv4.conf.all.send_redirects", "net.ipv4.conf.default.send_redirects"} {
		_ = ns.Sysctl(k, "0") // no ICMP redirects mixed into the output
	}
	return createIn(tb, ns, cfg)
}

// TestLinuxCoalesceSplitRoundTrip writes runs of consecutive TCP segments
// of one flow; Send coalesces each run into one TSO super packet, the
// kernel forwards it back out of the device, and the reader splits it. The
// segments must come back intact (TTL/hop limit one lower) and in order.
func TestLinuxCoalesceSplitRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
		proto    uint8
	}{
		{"tcp4", fwdSrc4, fwdDst4, tuntest.ProtoTCP},
		{"tcp6", fwdSrc6, fwdDst6, tuntest.ProtoTCP},
		{"udp4", fwdSrc4, fwdDst4, tuntest.ProtoUDP}, // USO
		{"udp6", fwdSrc6, fwdDst6, tuntest.ProtoUDP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := newHairpin(t, LinuxConfig{})
			src, dst := netip.AddrPortFrom(tc.src, 40000), netip.AddrPortFrom(tc.dst, 80)
			const segs, size = 20, 1000
			var pkts [][]byte
			for i := range segs {
				payload := bytes.Repeat([]byte{byte('a' + i)}, size)
				if tc.proto == tuntest.ProtoTCP {
					pkts = append(pkts, tuntest.TCP(src, dst, uint32(1+i*size), 1, tuntest.TCPAck, payload))
				} else {
					pkts = append(pkts, tuntest.UDP(src, dst, payload))
				}
			}
			bufs := make([][]byte, len(pkts))
			for i, p := range pkts {
				bufs[i] = make([]byte, hdrRoom+len(p), hdrRoom+65535) // room to coalesce
				copy(bufs[i][hdrRoom:], p)
			}
			sendAllLinux(t, dev, bufs)
			next := 0
			recvUntil(t, dev, func(pkt []byte) {
				p, err := tuntest.Parse(pkt)
				if err != nil {
					t.Fatalf("bad packet from the split: %v", err)
				}
				if p.Proto != tc.proto || p.Dst != dst {
					return
				}
				want := bytes.Repeat([]byte{byte('a' + next)}, size)
				if !bytes.Equal(p.Payload, want) || (tc.proto == tuntest.ProtoTCP && p.TCPSeq != uint32(1+next*size)) {
					t.Fatalf("segment %d: seq %d, payload %q...", next, p.TCPSeq, p.Payload[:min(8, len(p.Payload))])
				}
				next++
			}, func() bool { return next == segs })
			if st := dev.Stats(); st.RxSuperPackets == 0 {
				t.Fatalf("segments were not coalesced into a super packet (stats %+v)", st)
			}
		})
	}
}

// FuzzLinuxForward sends arbitrary batches (addresses rewritten so that the
// kernel forwards them back out of the device, checksums fixed) and drains
// the device in the background, checking that every packet PollRecvMany
// returns is a plausible IP packet no larger than the MTU. Coalesced writes
// come back as super packets, so this reaches wireguard-go's virtio split
// and our batch handling on the read side with fuzz-shaped input. A panic
// in a reader goroutine crashes the run, which the fuzzer reports. Needs
// root.
func FuzzLinuxForward(f *testing.F) {
	dev := newHairpin(f, LinuxConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var bad sync.Map
	wg.Add(1)
	go func() {
		defer wg.Done()
		bufs, sizes := linuxBufs(dev.BatchSize(), dev.MTU())
		for {
			n, err := dev.PollRecvMany(ctx, bufs, sizes, hdrRoom)
			if err != nil {
				return
			}
			for i := range n {
				if msg := checkRead(bufs[i][hdrRoom:hdrRoom+sizes[i]], dev.MTU()); msg != "" {
					bad.Store(msg, true)
				}
			}
		}
	}()
	f.Cleanup(func() { cancel(); wg.Wait() })
	seed := func(src, dst netip.Addr, segs int) []byte {
		var d []byte
		for i := range segs {
			d = append(d, tuntest.TCP(netip.AddrPortFrom(src, 1), netip.AddrPortFrom(dst, 2), uint32(1+i*100), 1, tuntest.TCPAck, bytes.Repeat([]byte{'x'}, 100))...)
		}
		return d
	}
	f.Add(seed(fwdSrc4, fwdDst4, 4), uint8(4))
	f.Add(seed(fwdSrc6, fwdDst6, 3), uint8(3))
	f.Add(tuntest.UDP(netip.AddrPortFrom(fwdSrc4, 1), netip.AddrPortFrom(fwdDst4, 2), []byte("u")), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, parts uint8) {
		k := 1 + int(parts%8)
		if len(data) < k {
			k = 1
		}
		size := len(data) / k
		bufs := make([][]byte, k)
		for i := range k {
			end := (i + 1) * size
			if i == k-1 {
				end = len(data)
			}
			p := data[i*size : end]
			b := make([]byte, hdrRoom+len(p), hdrRoom+65535)
			copy(b[hdrRoom:], p)
			hairpinAddrs(b[hdrRoom:])
			fixChecksums(b[hdrRoom:])
			bufs[i] = b
		}
		n, err := dev.Send(bufs, hdrRoom)
		if err != nil || n < 0 || n > k {
			t.Fatalf("Send(%d packets) = %d, %v", k, n, err)
		}
		bad.Range(func(k, _ any) bool {
			t.Fatalf("read path returned a bad packet: %v", k)
			return false
		})
	})
}

// hairpinAddrs points a packet's addresses at the forwarded prefixes
// (keeping the fuzzed host bytes) so that the kernel sends it back.
func hairpinAddrs(p []byte) {
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		copy(p[12:14], fwdSrc4.AsSlice()[:2])
		copy(p[16:18], fwdDst4.AsSlice()[:2])
	case len(p) >= 40 && p[0]>>4 == 6:
		s, d := fwdSrc6.As16(), fwdDst6.As16()
		copy(p[8:16], s[:8])
		copy(p[24:32], d[:8])
	}
}

// checkRead returns why pkt is not something the read path may return, or
// "".
func checkRead(pkt []byte, mtu int) string {
	switch {
	case len(pkt) == 0:
		return "empty packet"
	case len(pkt) > mtu:
		return fmt.Sprintf("packet of %d bytes > MTU %d", len(pkt), mtu)
	case pkt[0]>>4 != 4 && pkt[0]>>4 != 6:
		return fmt.Sprintf("IP version %d", pkt[0]>>4)
	}
	return ""
}

// TestLinuxMTURaisedBehindOurBack: someone raises the interface MTU after
// creation, so the kernel hands over super packets whose segments exceed
// the device's MTU-sized read buffers. They must be dropped and counted;
// the reader must survive (wireguard-go's split would slice out of range).
func TestLinuxMTURaisedBehindOurBack(t *testing.T) {
	dev := newHairpin(t, LinuxConfig{})
	dev.nlMu.Lock()
	link, err := dev.nl.LinkByIndex(dev.ifindex)
	if err == nil {
		err = dev.nl.LinkSetMTU(link, 9000)
	}
	dev.nlMu.Unlock()
	must(t, err)
	src, dst := netip.AddrPortFrom(fwdSrc4, 40000), netip.AddrPortFrom(fwdDst4, 80)
	var bufs [][]byte
	for i := range 8 {
		p := tuntest.TCP(src, dst, uint32(1+i*3000), 1, tuntest.TCPAck, bytes.Repeat([]byte{'m'}, 3000))
		b := make([]byte, hdrRoom+len(p), hdrRoom+65535)
		copy(b[hdrRoom:], p)
		bufs = append(bufs, b)
	}
	sendAllLinux(t, dev, bufs)
	// Then a small packet, which must still come through the same reader.
	small := tuntest.UDP(netip.AddrPortFrom(fwdSrc4, 1), netip.AddrPortFrom(fwdDst4, 2), []byte("after"))
	sendAllLinux(t, dev, withRoom([][]byte{small}))
	seen := false
	recvUntil(t, dev, func(pkt []byte) {
		p, err := tuntest.Parse(pkt)
		seen = seen || (err == nil && string(p.Payload) == "after")
	}, func() bool { return seen })
	if st := dev.Stats(); st.RxMalformed+st.RxTooBig == 0 {
		t.Fatalf("oversized segments were not counted: %+v", st)
	}
}
