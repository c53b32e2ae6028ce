package netstack

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"github.com/gozone/gozone/tun/tuntest"
)

const fwdWait = 20 * time.Second // generous: loaded CI machines

var (
	fwdClient4 = netip.MustParseAddr("100.64.0.7")
	fwdClient6 = netip.MustParseAddr("fd00:2021:1111::7")
	fwdGW4     = netip.MustParseAddr("100.64.0.1")
	fwdRes4    = netip.MustParsePrefix("10.99.0.0/24")
	fwdRes6    = netip.MustParsePrefix("fd99::/64")
)

// fwdRedirect publishes the host's loopback as 10.99.0.0/24 and fd99::/64.
func fwdRedirect(a netip.Addr) netip.Addr {
	switch {
	case fwdRes4.Contains(a):
		return netip.MustParseAddr("127.0.0.1")
	case fwdRes6.Contains(a):
		return netip.IPv6Loopback()
	}
	return a
}

// fwdPair wires a client stack to a forwarding stack (the gateway side)
// back to back.
func fwdPair(t testing.TB, fc ForwardConfig) (cl, gw *Device) {
	t.Helper()
	cl, err := New(Config{Addrs: []netip.Addr{fwdClient4, fwdClient6}, Name: "cl"})
	if err != nil {
		t.Fatal(err)
	}
	if fc.Redirect == nil {
		fc.Redirect = fwdRedirect
	}
	gw, err = NewForwarding(Config{Name: "gw"}, fc)
	if err != nil {
		cl.Close()
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	pump := func(from, to *Device) {
		defer wg.Done()
		bufs, sizes := make([][]byte, from.BatchSize()), make([]int, from.BatchSize())
		for i := range bufs {
			bufs[i] = make([]byte, from.MTU())
		}
		for {
			n, err := from.PollRecvMany(context.Background(), bufs, sizes, 0)
			if err != nil {
				return
			}
			for i := range n {
				bufs[i] = bufs[i][:sizes[i]]
			}
			to.Send(bufs[:n], 0)
			for i := range n {
				bufs[i] = bufs[i][:cap(bufs[i])]
			}
		}
	}
	wg.Add(2)
	go pump(cl, gw)
	go pump(gw, cl)
	t.Cleanup(func() {
		cl.Close()
		gw.Close()
		wg.Wait()
	})
	return cl, gw
}

// fwdTCPServer is a real loopback TCP server that answers each connection
// with "echo:" + everything it read up to EOF, then closes.
func fwdTCPServer(t testing.TB, network, addr string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(fwdWait))
				b, _ := io.ReadAll(c)
				_, _ = c.Write(append([]byte("echo:"), b...))
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// fwdUDPServer echoes every datagram with an "echo:" prefix.
func fwdUDPServer(t testing.TB, network, addr string) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

// TestForwardTCP: a client dials 10.99.0.5:<port> (and fd99::5) through
// the forwarding stack, which connects to the real server on loopback; the
// request, the half-close and the answer all cross.
func TestForwardTCP(t *testing.T) {
	fwdLeakCheck(t)
	srv4 := fwdTCPServer(t, "tcp4", "127.0.0.1:0")
	srv6 := fwdTCPServer(t, "tcp6", "[::1]:0")
	cl, gw := fwdPair(t, ForwardConfig{})
	for _, dst := range []netip.AddrPort{
		netip.AddrPortFrom(netip.MustParseAddr("10.99.0.5"), srv4.Port()),
		netip.AddrPortFrom(netip.MustParseAddr("fd99::5"), srv6.Port()),
	} {
		ctx, cancel := context.WithTimeout(context.Background(), fwdWait)
		c, err := cl.DialContext(ctx, "tcp", dst.String())
		cancel()
		if err != nil {
			t.Fatalf("dial %v: %v", dst, err)
		}
		if got := c.RemoteAddr().String(); got != dst.String() {
			t.Errorf("remote address %s, want %v", got, dst)
		}
		msg := bytes.Repeat([]byte("0123456789"), 20000) // 200 kB: many segments
		_ = c.SetDeadline(time.Now().Add(fwdWait))
		go func() {
			_, _ = c.Write(msg)
			_ = c.(interface{ CloseWrite() error }).CloseWrite()
		}()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatalf("read from %v: %v", dst, err)
		}
		if !bytes.Equal(got, append([]byte("echo:"), msg...)) {
			t.Fatalf("%v: got %d bytes, want %d", dst, len(got), len(msg)+5)
		}
	}
	if st := gw.ForwardStats(); st.TCPForwarded != 2 || st.TCPRefused != 0 {
		t.Errorf("stats: %+v", st)
	}
}

// TestForwardTCPRefused: a port nobody listens on is refused like a real
// one (RST), not accepted and then closed.
func TestForwardTCPRefused(t *testing.T) {
	fwdLeakCheck(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := netip.MustParseAddrPort(ln.Addr().String()).Port()
	ln.Close() // now closed: connecting gets ECONNREFUSED
	cl, gw := fwdPair(t, ForwardConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), fwdWait)
	defer cancel()
	c, err := cl.DialContext(ctx, "tcp4", netip.AddrPortFrom(netip.MustParseAddr("10.99.0.9"), port).String())
	if err == nil {
		c.Close()
		t.Fatal("dial to a closed port succeeded")
	}
	if ctx.Err() != nil {
		t.Fatalf("dial was not refused but timed out: %v", err)
	}
	if st := gw.ForwardStats(); st.TCPRefused != 1 || st.TCPForwarded != 0 {
		t.Errorf("stats: %+v", st)
	}
}

// TestForwardUDP: datagrams of one flow share one host socket, replies come
// back from the address the client used, and an idle flow is closed and
// reopened by the next datagram.
func TestForwardUDP(t *testing.T) {
	fwdLeakCheck(t)
	srv := fwdUDPServer(t, "udp4", "127.0.0.1:0")
	cl, gw := fwdPair(t, ForwardConfig{UDPIdleTimeout: 300 * time.Millisecond})
	dst := netip.AddrPortFrom(netip.MustParseAddr("10.99.0.5"), srv.Port())
	c, err := cl.DialContext(context.Background(), "udp4", dst.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip := func(i int) {
		t.Helper()
		msg := []byte{'d', byte('0' + i)}
		buf := make([]byte, 100)
		for try := 0; try < 20; try++ { // UDP: resend on loss
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			n, err := c.Read(buf)
			if err == nil {
				if want := append([]byte("echo:"), msg...); !bytes.Equal(buf[:n], want) {
					t.Fatalf("got %q want %q", buf[:n], want)
				}
				return
			}
		}
		t.Fatalf("no reply to datagram %d", i)
	}
	for i := range 3 {
		roundTrip(i)
	}
	if st := gw.ForwardStats(); st.UDPFlows != 1 || st.UDPActive != 1 {
		t.Fatalf("after one flow: %+v", st)
	}
	deadline := time.Now().Add(fwdWait)
	for gw.ForwardStats().UDPActive != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("idle flow not closed: %+v", gw.ForwardStats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	roundTrip(4)
	if st := gw.ForwardStats(); st.UDPFlows != 2 {
		t.Fatalf("after idle: %+v", st)
	}
}

// TestForwardOwnAddress: the gateway's own address is served by its local
// sockets (the DNS server), and ports nobody listens on there are refused
// instead of being forwarded to the host.
func TestForwardOwnAddress(t *testing.T) {
	fwdLeakCheck(t)
	cl, gw := fwdPair(t, ForwardConfig{})
	if err := gw.SetAddrs([]netip.Addr{fwdGW4}); err != nil {
		t.Fatal(err)
	}
	pc, err := gw.ListenUDP(netip.AddrPortFrom(fwdGW4, 53535))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 100)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(append([]byte("local:"), buf[:n]...), from)
		}
	}()
	c, err := cl.DialContext(context.Background(), "udp4", "100.64.0.1:53535")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(fwdWait))
	if _, err := c.Write([]byte("q")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "local:q" {
		t.Fatalf("local UDP: %q, %v", buf[:n], err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), fwdWait)
	defer cancel()
	if tc, err := cl.DialContext(ctx, "tcp4", "100.64.0.1:22"); err == nil {
		tc.Close()
		t.Fatal("TCP to the gateway's own address without a listener was accepted")
	}
	if st := gw.ForwardStats(); st.ToSelf == 0 || st.TCPForwarded != 0 || st.UDPFlows != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// fwdEchoRequest builds an ICMPv4 echo request src → dst.
func fwdEchoRequest(src, dst netip.Addr, id, seq uint16, data []byte) []byte {
	pkt := buildEchoReply(src, dst, id, seq, data)
	m := pkt[20:]
	m[0] = 8
	m[2], m[3] = 0, 0
	binary.BigEndian.PutUint16(m[2:4], ^checksum.Checksum(m, 0))
	return pkt
}

// TestForwardEcho: an echo request to a resource is answered only because
// the host's ping of the (redirected) destination was answered; an
// address that does not answer gets no reply.
func TestForwardEcho(t *testing.T) {
	fwdLeakCheck(t)
	redirect := func(a netip.Addr) netip.Addr {
		if a == netip.MustParseAddr("10.99.1.1") {
			return netip.Addr{}
		}
		return fwdRedirect(a)
	}
	gw, err := NewForwarding(Config{Name: "gw"}, ForwardConfig{Redirect: redirect, EchoTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	if c, dgram := gw.fwd.listenICMP(false); c == nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no ping socket and no raw socket in CI (run as root or widen net.ipv4.ping_group_range)")
		}
		t.Skip("needs unprivileged ping sockets (net.ipv4.ping_group_range) or root")
	} else {
		t.Logf("ping socket unprivileged=%v", dgram)
		c.Close()
	}
	data := []byte("gozone-ping")
	// 10.99.0.5 → 127.0.0.1 answers. 10.99.1.1 redirects to no address
	// (tests only send to loopback, and every loopback address answers):
	// the request must be dropped, never answered by the stack itself.
	req := fwdEchoRequest(fwdClient4, netip.MustParseAddr("10.99.0.5"), 0x4242, 7, data)
	if n, err := gw.Send([][]byte{req}, 0); n != 1 || err != nil {
		t.Fatalf("send: %d %v", n, err)
	}
	bufs, sizes := [][]byte{make([]byte, 1500)}, []int{0}
	ctx, cancel := context.WithTimeout(context.Background(), fwdWait)
	defer cancel()
	if _, err := gw.PollRecvMany(ctx, bufs, sizes, 0); err != nil {
		t.Fatalf("no echo reply: %v (stats %+v)", err, gw.ForwardStats())
	}
	r := bufs[0][:sizes[0]]
	if len(r) != 20+8+len(data) || r[9] != 1 || r[20] != 0 ||
		netip.AddrFrom4([4]byte(r[12:16])) != netip.MustParseAddr("10.99.0.5") ||
		netip.AddrFrom4([4]byte(r[16:20])) != fwdClient4 ||
		binary.BigEndian.Uint16(r[24:26]) != 0x4242 || binary.BigEndian.Uint16(r[26:28]) != 7 ||
		!bytes.Equal(r[28:], data) || checksum.Checksum(r[20:], 0) != 0xffff {
		t.Fatalf("bad echo reply % x", r)
	}
	req = fwdEchoRequest(fwdClient4, netip.MustParseAddr("10.99.1.1"), 1, 1, data)
	gw.Send([][]byte{req}, 0)
	deadline := time.Now().Add(fwdWait)
	for gw.ForwardStats().EchoDropped == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("unanswered echo not dropped: %+v", gw.ForwardStats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if n, err := gw.PollRecvMany(ctx2, bufs, sizes, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %d packets for an address that does not answer", n)
	}
	if st := gw.ForwardStats(); st.EchoReplies != 1 || st.EchoSent != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestForwardCloseReleases: closing the device with TCP and UDP flows open
// ends every forwarding goroutine and closes the host sockets.
func TestForwardCloseReleases(t *testing.T) {
	fwdLeakCheck(t)
	tsrv := fwdTCPServer(t, "tcp4", "127.0.0.1:0")
	usrv := fwdUDPServer(t, "udp4", "127.0.0.1:0")
	cl, gw := fwdPair(t, ForwardConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), fwdWait)
	defer cancel()
	tc, err := cl.DialContext(ctx, "tcp4", netip.AddrPortFrom(netip.MustParseAddr("10.99.0.5"), tsrv.Port()).String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if _, err := tc.Write([]byte("open")); err != nil { // no CloseWrite: stays open
		t.Fatal(err)
	}
	uc, err := cl.DialContext(ctx, "udp4", netip.AddrPortFrom(netip.MustParseAddr("10.99.0.5"), usrv.Port()).String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	deadline := time.Now().Add(fwdWait)
	for st := gw.ForwardStats(); st.TCPActive != 1 || st.UDPActive != 1; st = gw.ForwardStats() {
		if time.Now().After(deadline) {
			t.Fatalf("flows not open: %+v", st)
		}
		_, _ = uc.Write([]byte("u"))
		time.Sleep(50 * time.Millisecond)
	}
	done := make(chan struct{})
	go func() { gw.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(fwdWait):
		t.Fatal("Close did not return with flows open")
	}
	if st := gw.ForwardStats(); st.TCPActive != 0 || st.UDPActive != 0 {
		t.Fatalf("flows after close: %+v", st)
	}
}

// fwdLeakCheck verifies, after every other cleanup of t ran, that no
// goroutine started during the test is left.
func fwdLeakCheck(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// TestForwardPingThroughPair: Ping from a client stack through the
// forwarding stack reaches the host's loopback and returns.
func TestForwardPingThroughPair(t *testing.T) {
	fwdLeakCheck(t)
	cl, gw := fwdPair(t, ForwardConfig{})
	if c, _ := gw.fwd.listenICMP(false); c == nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no ping socket and no raw socket in CI (run as root or widen net.ipv4.ping_group_range)")
		}
		t.Skip("needs unprivileged ping sockets (net.ipv4.ping_group_range) or root")
	} else {
		c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), fwdWait)
	defer cancel()
	rtt, err := cl.Ping(ctx, netip.MustParseAddr("10.99.0.77"), 3, []byte("abc"))
	if err != nil {
		t.Fatalf("ping: %v (stats %+v)", err, gw.ForwardStats())
	}
	t.Logf("rtt %v", rtt)
	if st := gw.ForwardStats(); st.EchoReplies != 1 {
		t.Fatalf("stats: %+v", st)
	}
	// The gateway's own address is answered by its stack, not the host.
	if err := gw.SetAddrs([]netip.Addr{fwdGW4}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Ping(ctx, fwdGW4, 4, []byte("self")); err != nil {
		t.Fatalf("ping gateway address: %v", err)
	}
	if st := gw.ForwardStats(); st.EchoSent != 1 {
		t.Fatalf("own address pinged from the host: %+v", st)
	}
}

// FuzzForwardSend feeds arbitrary packets to a forwarding stack. Its Dial
// refuses everything and Redirect maps every address to none, so no
// packet makes it leave the process; the stack must neither panic nor
// wedge, and what it answers is drained.
func FuzzForwardSend(f *testing.F) {
	f.Add(tuntest.TCP(netip.AddrPortFrom(fwdClient4, 40000), netip.MustParseAddrPort("10.99.0.5:80"), 1, 0, tuntest.TCPSyn, nil))
	f.Add(tuntest.UDP(netip.AddrPortFrom(fwdClient6, 5353), netip.MustParseAddrPort("[fd99::5]:53"), []byte("q")))
	f.Add(tuntest.ICMPEcho(fwdClient4, netip.MustParseAddr("10.99.0.5"), false, 1, 1, []byte("ping")))
	f.Add(tuntest.ICMPEcho(fwdClient6, netip.MustParseAddr("fd99::5"), false, 1, 1, []byte("ping")))
	f.Add([]byte{0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 100, 64, 0, 7, 10, 99, 0, 5, 8, 0, 0, 0})
	f.Add([]byte{0x60})
	refuse := func(context.Context, string, netip.AddrPort) (net.Conn, error) {
		return nil, errors.New("fuzz: no dialing")
	}
	d, err := NewForwarding(Config{Name: "fuzz"}, ForwardConfig{
		Dial:     refuse,
		Redirect: func(netip.Addr) netip.Addr { return netip.Addr{} },
	})
	if err != nil {
		f.Fatal(err)
	}
	defer d.Close()
	fuzzSend(f, d)
}

// TestForwardBadDestinations: destinations a host socket would take as
// the host itself (0.0.0.0, ::, 0/8) and broadcast are never dialled,
// whatever the access control let through.
func TestForwardBadDestinations(t *testing.T) {
	fwdLeakCheck(t)
	var mu sync.Mutex
	var dialed []netip.AddrPort
	cl, gw := fwdPair(t, ForwardConfig{
		Redirect: func(a netip.Addr) netip.Addr { return a }, // no mapping
		Dial: func(_ context.Context, _ string, ap netip.AddrPort) (net.Conn, error) {
			mu.Lock()
			dialed = append(dialed, ap)
			mu.Unlock()
			return nil, errors.New("test: refused")
		},
	})
	for _, tc := range []struct {
		bad  bool
		addr string
	}{
		{true, "0.0.0.0"}, {true, "0.1.2.3"}, {true, "255.255.255.255"}, {true, "::"}, {true, "::ffff:127.0.0.1"},
		{false, "10.99.0.5"},
	} {
		a := netip.MustParseAddr(tc.addr)
		for _, network := range []string{"tcp", "udp"} {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			c, err := cl.DialContext(ctx, network, netip.AddrPortFrom(a, 80).String())
			if err == nil {
				_, _ = c.Write([]byte("x"))
				time.Sleep(50 * time.Millisecond)
				c.Close()
			}
			cancel()
		}
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	got := append([]netip.AddrPort(nil), dialed...)
	mu.Unlock()
	for _, ap := range got {
		if ap.Addr() != netip.MustParseAddr("10.99.0.5") {
			t.Errorf("dialled %v", ap)
		}
	}
	if len(got) != 2 {
		t.Errorf("dials %v, want the TCP and UDP to 10.99.0.5", got)
	}
	if st := gw.ForwardStats(); st.BadDest == 0 {
		t.Errorf("stats: %+v", st)
	}
}
