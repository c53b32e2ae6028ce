//go:build linux

package tun

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gozone/gozone/internal/netns"
)

// tunLoop is two namespaces, each with one device, joined by two pump
// goroutines that move every packet one device reads into the other
// (PollRecvMany -> Send), the way connlib moves packets to and from
// WireGuard. Sockets in nsA reach loopB4/6 in nsB through the devices.
type tunLoop struct {
	nsA, nsB *netns.NS
	a, b     *LinuxTun
	fwd      atomic.Uint64 // packets moved, both directions
}

var (
	loopA4 = netip.MustParseAddr("10.210.0.1")
	loopB4 = netip.MustParseAddr("10.210.1.1")
	loopA6 = netip.MustParseAddr("fd30::1")
	loopB6 = netip.MustParseAddr("fd31::1")
)

func newTunLoop(tb testing.TB, cfg LinuxConfig) *tunLoop {
	tb.Helper()
	netns.RequireRoot(tb)
	l := &tunLoop{nsA: netns.New(tb, "lpA"), nsB: netns.New(tb, "lpB")}
	ca, cb := cfg, cfg
	ca.Addrs = []netip.Prefix{netip.PrefixFrom(loopA4, 32), netip.PrefixFrom(loopA6, 128)}
	ca.Routes = []netip.Prefix{netip.MustParsePrefix("10.210.1.0/24"), netip.MustParsePrefix("fd31::/64")}
	cb.Addrs = []netip.Prefix{netip.PrefixFrom(loopB4, 32), netip.PrefixFrom(loopB6, 128)}
	cb.Routes = []netip.Prefix{netip.MustParsePrefix("10.210.0.0/24"), netip.MustParsePrefix("fd30::/64")}
	l.a = createIn(tb, l.nsA, ca)
	l.b = createIn(tb, l.nsB, cb)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.pump(ctx, l.a, l.b) }()
	go func() { defer wg.Done(); l.pump(ctx, l.b, l.a) }()
	tb.Cleanup(func() { cancel(); wg.Wait() })
	return l
}

// pump moves packets from one device to the other until ctx is done. Its
// buffers are 64 KiB, like wireguard-go's, so that writes can coalesce.
func (l *tunLoop) pump(ctx context.Context, from, to *LinuxTun) {
	const room = 16
	bs := from.BatchSize()
	bufs := make([][]byte, bs)
	for i := range bufs {
		bufs[i] = make([]byte, room+65535)
	}
	sizes := make([]int, bs)
	out := make([][]byte, bs)
	for {
		n, err := from.PollRecvMany(ctx, bufs, sizes, room)
		if err != nil {
			return
		}
		for i := range n {
			out[i] = bufs[i][:room+sizes[i]]
		}
		if err := to.SendReady(ctx); err != nil {
			return
		}
		if _, err := to.Send(out[:n], room); err != nil {
			return
		}
		l.fwd.Add(uint64(n))
	}
}

// listenTCP listens in ns; the listener is closed on cleanup.
func listenTCP(tb testing.TB, ns *netns.NS, addr netip.AddrPort) net.Listener {
	tb.Helper()
	var ln net.Listener
	err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr.String())
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	return ln
}

func dialTCP(tb testing.TB, ns *netns.NS, addr netip.AddrPort) net.Conn {
	tb.Helper()
	var c net.Conn
	err := ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr.String(), 30*time.Second)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// echoServer echoes every connection until the listener closes.
func echoServer(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(120 * time.Second))
			_, _ = io.Copy(c, c)
		}()
	}
}

// TestLinuxTCPThroughTwoTuns sends bulk TCP both ways between two
// namespaces whose only path is device -> pump -> device, for both
// families, with and without offloads, with one and two queues, and
// checks every byte. With offloads the kernel hands over TSO super packets
// (split on read) and the writes are coalesced again.
func TestLinuxTCPThroughTwoTuns(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  LinuxConfig
	}{
		{"offloads", LinuxConfig{}},
		{"nooffloads", LinuxConfig{DisableOffloads: true}},
		{"offloads-queues2", LinuxConfig{Queues: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newTunLoop(t, tc.cfg)
			const size = 4 << 20
			data := make([]byte, size)
			rng := rand.NewChaCha8([32]byte{1})
			_, _ = rng.Read(data)
			for _, dst := range []netip.Addr{loopB4, loopB6} {
				ln := listenTCP(t, l.nsB, netip.AddrPortFrom(dst, 8000))
				go echoServer(ln)
				c := dialTCP(t, l.nsA, netip.AddrPortFrom(dst, 8000))
				_ = c.SetDeadline(time.Now().Add(120 * time.Second))
				werr := make(chan error, 1)
				go func() {
					_, err := c.Write(data)
					werr <- err
				}()
				got := make([]byte, size)
				if _, err := io.ReadFull(c, got); err != nil {
					t.Fatalf("%v: read back: %v (A %+v, B %+v)", dst, err, l.a.Stats(), l.b.Stats())
				}
				if err := <-werr; err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("%v: echoed data differs", dst)
				}
			}
			sa, sb := l.a.Stats(), l.b.Stats()
			t.Logf("A %+v", sa)
			t.Logf("B %+v", sb)
			super := sa.RxSuperPackets + sb.RxSuperPackets
			if tc.cfg.DisableOffloads && super != 0 {
				t.Fatalf("%d super packets without offloads", super)
			}
			if !tc.cfg.DisableOffloads && super == 0 {
				t.Fatal("offloads on but the kernel never sent a TSO super packet")
			}
			if sa.RxMalformed+sb.RxMalformed+sa.TxDropped+sb.TxDropped != 0 {
				t.Fatal("malformed or dropped packets on a clean path")
			}
		})
	}
}
