//go:build linux

package tun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/gozone/gozone/internal/netns"
	"github.com/gozone/gozone/tun/tuntest"
)

func offloadModes() []struct {
	name string
	off  bool
} {
	return []struct {
		name string
		off  bool
	}{{"offloads", false}, {"nooffloads", true}}
}

// TestLinuxUDPBothWays sends datagrams from a kernel socket into the device
// (read with PollRecvMany) and answers each with a packet written with Send
// that the socket must receive, in order, for both families, with and
// without offloads.
func TestLinuxUDPBothWays(t *testing.T) {
	for _, m := range offloadModes() {
		t.Run(m.name, func(t *testing.T) {
			ns, dev := newTunNS(t, LinuxConfig{DisableOffloads: m.off})
			if dev.Offloads() == m.off {
				t.Fatalf("Offloads() = %v with DisableOffloads %v", dev.Offloads(), m.off)
			}
			for _, fam := range []struct{ local, remote netip.Addr }{{tunLocal4, tunRemote4}, {tunLocal6, tunRemote6}} {
				const count = 300 // more than two batches
				sock := udpIn(t, ns, netip.AddrPortFrom(fam.local, 0))
				sockAddr := sock.LocalAddr().(*net.UDPAddr).AddrPort()
				remote := netip.AddrPortFrom(fam.remote, 9000)
				for i := range count {
					if _, err := sock.WriteToUDPAddrPort(fmt.Appendf(nil, "ping-%d", i), remote); err != nil {
						t.Fatal(err)
					}
				}
				var replies [][]byte
				recvUntil(t, dev, func(pkt []byte) {
					p, err := tuntest.Parse(pkt)
					if err != nil || p.Proto != tuntest.ProtoUDP || p.Dst != remote {
						return // e.g. unrelated kernel chatter
					}
					if p.Src != sockAddr {
						t.Fatalf("source %v, want %v", p.Src, sockAddr)
					}
					if want := fmt.Sprintf("ping-%d", len(replies)); string(p.Payload) != want {
						t.Fatalf("payload %q, want %q (out of order or corrupted)", p.Payload, want)
					}
					replies = append(replies, tuntest.UDP(remote, sockAddr, fmt.Appendf(nil, "pong-%d", len(replies))))
				}, func() bool { return len(replies) == count })

				sendAllLinux(t, dev, withRoom(replies))
				buf := make([]byte, 2048)
				for i := range count {
					_ = sock.SetReadDeadline(time.Now().Add(30 * time.Second))
					n, from, err := sock.ReadFromUDPAddrPort(buf)
					if err != nil {
						t.Fatalf("reply %d: %v (stats %+v)", i, err, dev.Stats())
					}
					if from != remote || string(buf[:n]) != fmt.Sprintf("pong-%d", i) {
						t.Fatalf("reply %d: %q from %v", i, buf[:n], from)
					}
				}
			}
			st := dev.Stats()
			if st.RxPackets < 600 || st.TxPackets != 600 || st.TxDropped != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestLinuxRefusesExistingDevice(t *testing.T) {
	ns, dev := newTunNS(t, LinuxConfig{Queues: 2})
	for _, queues := range []int{1, 2} {
		err := ns.Do(func() error {
			d, err := CreateLinux(LinuxConfig{Name: dev.Name(), Queues: queues}, nil)
			if err == nil {
				d.Close()
			}
			return err
		})
		if !errors.Is(err, ErrDeviceExists) || !strings.Contains(err.Error(), `"`+dev.Name()+`"`) {
			t.Fatalf("second CreateLinux(%q, %d queues): %v, want ErrDeviceExists naming the device", dev.Name(), queues, err)
		}
	}
	// The kernel-side guard (IFF_TUN_EXCL) holds even if the netlink check
	// raced: attaching a first queue to the existing name is refused too.
	err := ns.Do(func() error {
		fd, err := openQueueFD(dev.Name(), true, true, true)
		if err == nil {
			unix.Close(fd)
		}
		return err
	})
	if !errors.Is(err, ErrDeviceExists) {
		t.Fatalf("exclusive attach: %v, want ErrDeviceExists", err)
	}
	// A non-TUN interface of that name is refused as well.
	must(t, netns.Veth(ns, "gzveth0", ns, "gzveth1"))
	err = ns.Do(func() error {
		_, err := CreateLinux(LinuxConfig{Name: "gzveth0"}, nil)
		return err
	})
	if !errors.Is(err, ErrDeviceExists) {
		t.Fatalf("CreateLinux over a veth link: %v", err)
	}
	// The original device still works after the refused attempts.
	sock := udpIn(t, ns, netip.AddrPortFrom(tunLocal4, 0))
	if _, err := sock.WriteToUDPAddrPort([]byte("still here"), netip.AddrPortFrom(tunRemote4, 1)); err != nil {
		t.Fatal(err)
	}
	seen := false
	recvUntil(t, dev, func(pkt []byte) {
		p, err := tuntest.Parse(pkt)
		seen = seen || (err == nil && string(p.Payload) == "still here")
	}, func() bool { return seen })
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestLinuxConfigErrors(t *testing.T) {
	for _, cfg := range []LinuxConfig{
		{Name: ""},
		{Name: "this-name-is-too-long"},
		{Name: "ok", Queues: 17},
		{Name: "ok", Queues: -1},
		{Name: "ok", MTU: 100},
	} {
		if d, err := CreateLinux(cfg, nil); err == nil {
			d.Close()
			t.Fatalf("CreateLinux(%+v) succeeded", cfg)
		}
	}
}

func TestLinuxCloseUnblocks(t *testing.T) {
	for _, queues := range []int{1, 3} {
		t.Run(fmt.Sprint(queues), func(t *testing.T) {
			ns, dev := newTunNS(t, LinuxConfig{Queues: queues})
			errc := make(chan error, 4)
			for range 2 {
				go func() {
					bufs, sizes := linuxBufs(4, dev.MTU())
					_, err := dev.PollRecvMany(context.Background(), bufs, sizes, hdrRoom)
					errc <- err
				}()
			}
			time.Sleep(50 * time.Millisecond) // let them block (not required for correctness)
			must(t, dev.Close())
			for range 2 {
				select {
				case err := <-errc:
					if !errors.Is(err, ErrClosed) {
						t.Fatalf("blocked PollRecvMany returned %v, want ErrClosed", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("PollRecvMany still blocked 10 s after Close")
				}
			}
			if err := dev.SendReady(context.Background()); !errors.Is(err, ErrClosed) {
				t.Fatalf("SendReady after Close: %v", err)
			}
			if n, err := dev.Send(withRoom([][]byte{tuntest.UDP(netip.AddrPortFrom(tunRemote4, 1), netip.AddrPortFrom(tunLocal4, 2), nil)}), hdrRoom); n != 0 || !errors.Is(err, ErrClosed) {
				t.Fatalf("Send after Close: %d, %v", n, err)
			}
			bufs, sizes := linuxBufs(1, dev.MTU())
			if _, err := dev.PollRecvMany(context.Background(), bufs, sizes, 0); !errors.Is(err, ErrClosed) {
				t.Fatalf("PollRecvMany after Close: %v", err)
			}
			if err := dev.AddRoute(netip.MustParsePrefix("10.9.9.0/24")); !errors.Is(err, ErrClosed) {
				t.Fatalf("AddRoute after Close: %v", err)
			}
			must(t, dev.Close()) // idempotent
			// The kernel removes the interface with its last queue.
			deadline := time.Now().Add(10 * time.Second)
			for {
				_, err := ns.Netlink().LinkByName(dev.Name())
				if errors.As(err, &netlink.LinkNotFoundError{}) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("interface %s still exists after Close (%v)", dev.Name(), err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

func TestLinuxContextCancel(t *testing.T) {
	_, dev := newTunNS(t, LinuxConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		bufs, sizes := linuxBufs(4, dev.MTU())
		_, err := dev.PollRecvMany(ctx, bufs, sizes, hdrRoom)
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("PollRecvMany: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("PollRecvMany ignored ctx")
	}
	if err := dev.SendReady(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("SendReady: %v", err)
	}
	if err := dev.SendReady(context.Background()); err != nil {
		t.Fatalf("SendReady: %v", err)
	}
}

// TestLinuxSendDropsGarbage gives Send malformed packets among good ones:
// the bad ones are dropped and counted, the good ones delivered.
func TestLinuxSendDropsGarbage(t *testing.T) {
	for _, m := range offloadModes() {
		t.Run(m.name, func(t *testing.T) {
			ns, dev := newTunNS(t, LinuxConfig{DisableOffloads: m.off})
			sock := udpIn(t, ns, netip.AddrPortFrom(tunLocal4, 7001))
			good := tuntest.UDP(netip.AddrPortFrom(tunRemote4, 1), netip.AddrPortFrom(tunLocal4, 7001), []byte("good"))
			pkts := [][]byte{
				{},               // empty
				{0x45},           // truncated header
				{0x75, 0, 0, 20}, // IP version 7
				bytes.Repeat([]byte{0x46}, 19),
				good,
			}
			bufs := withRoom(pkts)
			n, err := dev.Send(bufs, hdrRoom)
			if err != nil || n != 1 {
				t.Fatalf("Send: %d, %v; want 1 accepted", n, err)
			}
			if st := dev.Stats(); st.TxDropped != 4 || st.TxPackets != 1 {
				t.Fatalf("stats %+v, want 4 dropped, 1 sent", st)
			}
			buf := make([]byte, 100)
			_ = sock.SetReadDeadline(time.Now().Add(30 * time.Second))
			if n, _, err := sock.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "good" {
				t.Fatalf("good packet: %q, %v", buf[:n], err)
			}
			// Offsets past the end and offset 0 (no headroom) are handled.
			if n, err := dev.Send([][]byte{make([]byte, 4)}, 8); n != 0 || err != nil {
				t.Fatalf("Send past end: %d, %v", n, err)
			}
			if n, err := dev.Send([][]byte{good}, 0); n != 1 || err != nil {
				t.Fatalf("Send at offset 0: %d, %v", n, err)
			}
			_ = sock.SetReadDeadline(time.Now().Add(30 * time.Second))
			if n, _, err := sock.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "good" {
				t.Fatalf("packet sent at offset 0: %q, %v", buf[:n], err)
			}
		})
	}
}

// TestLinuxRecvBufferTooSmall: a packet that does not fit the caller's
// buffer is dropped and counted, never truncated.
func TestLinuxRecvBufferTooSmall(t *testing.T) {
	ns, dev := newTunNS(t, LinuxConfig{})
	sock := udpIn(t, ns, netip.AddrPortFrom(tunLocal4, 0))
	dst := netip.AddrPortFrom(tunRemote4, 9)
	_, _ = sock.WriteToUDPAddrPort(make([]byte, 500), dst)
	_, _ = sock.WriteToUDPAddrPort([]byte("small"), dst)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bufs, sizes := [][]byte{make([]byte, hdrRoom+100)}, []int{0}
	for {
		n, err := dev.PollRecvMany(ctx, bufs, sizes, hdrRoom)
		must(t, err)
		p, perr := tuntest.Parse(bufs[0][hdrRoom : hdrRoom+sizes[0]])
		if n == 1 && perr == nil && string(p.Payload) == "small" {
			break
		}
	}
	if st := dev.Stats(); st.RxTooBig < 1 {
		t.Fatalf("stats %+v, want RxTooBig >= 1", st)
	}
}

func TestLinuxRoutes(t *testing.T) {
	ns, dev := newTunNS(t, LinuxConfig{Routes: []netip.Prefix{netip.MustParsePrefix("10.230.0.0/24")}})
	via := func(ip string) bool {
		rs, err := ns.Netlink().RouteGet(net.ParseIP(ip))
		return err == nil && len(rs) > 0 && rs[0].LinkIndex == dev.ifindex
	}
	if !via("10.230.0.9") || !via("10.201.3.4") || !via("fd21::99") {
		t.Fatal("configured routes do not point at the device")
	}
	p := netip.MustParsePrefix("10.240.1.0/24")
	must(t, dev.AddRoute(p))
	must(t, dev.AddRoute(p)) // idempotent
	if !via("10.240.1.7") {
		t.Fatal("AddRoute: route missing")
	}
	must(t, dev.RemoveRoute(p))
	if via("10.240.1.7") {
		t.Fatal("RemoveRoute: route still there")
	}
	must(t, dev.RemoveRoute(p)) // absent: not an error
	l, err := ns.Netlink().LinkByName(dev.Name())
	must(t, err)
	if a := l.Attrs(); a.MTU != DefaultMTU || a.TxQLen != DefaultTxQueueLen || a.Flags&net.FlagUp == 0 {
		t.Fatalf("link attrs: mtu %d txqlen %d flags %v", a.MTU, a.TxQLen, a.Flags)
	}
}

// LinuxTun has exactly connlib.Tun's method set (tuntest.Device mirrors it).
var _ tuntest.Device = (*LinuxTun)(nil)

// TestLinuxNoGoroutineLeak: Close stops every goroutine the device started
// (a reader and a write worker per queue), also with traffic in flight.
func TestLinuxNoGoroutineLeak(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ns, dev := newTunNS(t, LinuxConfig{Queues: 3})
	sock := udpIn(t, ns, netip.AddrPortFrom(tunLocal4, 0))
	for i := range 500 { // more than the device's batches can hold unread
		_, _ = sock.WriteToUDPAddrPort([]byte{byte(i)}, netip.AddrPortFrom(tunRemote4, uint16(1000+i)))
	}
	bufs := withRoom([][]byte{tuntest.UDP(netip.AddrPortFrom(tunRemote4, 1), netip.AddrPortFrom(tunLocal4, 2), nil)})
	if _, err := dev.Send(bufs, hdrRoom); err != nil {
		t.Fatal(err)
	}
	must(t, dev.Close())
}
