//go:build linux

package tun

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/gozone/gozone/internal/netns"
)

// The address plan of the single-device tests: the kernel side of the
// TUN owns tunLocal4/6; tunRemote4/6 are routed into the device.
var (
	tunLocal4  = netip.MustParseAddr("10.200.0.1")
	tunLocal6  = netip.MustParseAddr("fd20::1")
	tunRemote4 = netip.MustParseAddr("10.201.0.2")
	tunRemote6 = netip.MustParseAddr("fd21::2")
)

// hdrRoom is the headroom the tests read and write at: wireguard-go's
// MessageTransportHeaderSize, which leaves room for the virtio header.
const hdrRoom = 16

// uniqueTunName returns a fresh interface name (13 bytes).
func uniqueTunName() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return "gzt" + hex.EncodeToString(b[:])
}

func testLogger(t testing.TB) *zap.Logger {
	if testing.Verbose() {
		return zaptest.NewLogger(t)
	}
	return zap.NewNop()
}

// createIn creates a device inside ns and closes it on cleanup (before the
// namespace goes away: cleanups run last-in first-out).
func createIn(t testing.TB, ns *netns.NS, cfg LinuxConfig) *LinuxTun {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = uniqueTunName()
	}
	var dev *LinuxTun
	err := ns.Do(func() (err error) {
		dev, err = CreateLinux(cfg, testLogger(t))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	return dev
}

// newTunNS creates a namespace with one device using the address plan
// above (both families).
func newTunNS(t testing.TB, cfg LinuxConfig) (*netns.NS, *LinuxTun) {
	t.Helper()
	netns.RequireRoot(t)
	ns := netns.New(t, "tun")
	cfg.Addrs = append(cfg.Addrs, netip.PrefixFrom(tunLocal4, 32), netip.PrefixFrom(tunLocal6, 128))
	cfg.Routes = append(cfg.Routes, netip.MustParsePrefix("10.201.0.0/16"), netip.MustParsePrefix("fd21::/64"))
	return ns, createIn(t, ns, cfg)
}

// udpIn opens a UDP socket in ns bound to addr, with a large receive
// buffer, closed on cleanup.
func udpIn(t testing.TB, ns *netns.NS, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := ns.Do(func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if rc, err := c.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 32<<20)
		})
	}
	return c
}

// linuxBufs returns n buffers of hdrRoom+size bytes.
func linuxBufs(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, hdrRoom+size)
	}
	return bufs, make([]int, n)
}

// withRoom copies pkts into fresh buffers with hdrRoom bytes in front and
// returns them ready for Send(bufs, hdrRoom).
func withRoom(pkts [][]byte) [][]byte {
	out := make([][]byte, len(pkts))
	for i, p := range pkts {
		b := make([]byte, hdrRoom+len(p), hdrRoom+len(p)+2048)
		copy(b[hdrRoom:], p)
		out[i] = b
	}
	return out
}

// sendAllLinux writes pkts (already with hdrRoom headroom) in batches and
// fails the test unless every packet is accepted.
func sendAllLinux(t testing.TB, dev *LinuxTun, bufs [][]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(bufs) > 0 {
		n := min(len(bufs), dev.BatchSize())
		if err := dev.SendReady(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := dev.Send(bufs[:n], hdrRoom)
		if err != nil || got != n {
			t.Fatalf("Send: %d of %d accepted, err %v (stats %+v)", got, n, err, dev.Stats())
		}
		bufs = bufs[n:]
	}
}

// recvUntil reads from dev until done returns true for the packets seen so
// far or 30 s pass. Each packet is passed to onPkt.
func recvUntil(t testing.TB, dev *LinuxTun, onPkt func(pkt []byte), done func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bufs, sizes := linuxBufs(dev.BatchSize(), dev.MTU())
	for !done() {
		n, err := dev.PollRecvMany(ctx, bufs, sizes, hdrRoom)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("timed out waiting for packets (stats %+v)", dev.Stats())
			}
			t.Fatal(err)
		}
		for i := range n {
			onPkt(bufs[i][hdrRoom : hdrRoom+sizes[i]])
		}
	}
}
