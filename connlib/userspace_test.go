package connlib

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/icmp"

	"github.com/gozone/gozone/connlib/acl"
	"github.com/gozone/gozone/connlib/snownet"
	devportal "github.com/gozone/gozone/examples/portal"
)

// usEcho writes msg on c and reads the same bytes back.
func usEcho(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(usWait))
	go func() { _, _ = c.Write(msg) }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("echo read: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("echo: different bytes came back")
	}
}

// TestUserspaceDialTCPAndUDP: an embedded client dials TCP and UDP through
// a userspace gateway to servers on the gateway host's loopback, by
// resource address (CIDR resource) and by name (DNS resource resolved by
// the session's DNS).
func TestUserspaceDialTCPAndUDP(t *testing.T) {
	f := usSetup(t, gwTestLogger(t))
	uc := f.client
	ctx := usCtx(t)

	c, err := uc.DialContext(ctx, "tcp", netip.AddrPortFrom(usResourceIP, f.tcpPort).String())
	if err != nil {
		t.Fatalf("dial TCP by address: %v", err)
	}
	usEcho(t, c, bytes.Repeat([]byte("gozone "), 40000)) // 280 kB
	c.Close()

	c, err = uc.DialContext(ctx, "tcp", net.JoinHostPort(usDNSName, fmt.Sprint(f.tcpPort)))
	if err != nil {
		t.Fatalf("dial TCP by name: %v", err)
	}
	if ra := netip.MustParseAddrPort(c.RemoteAddr().String()).Addr(); !netip.MustParsePrefix("100.96.0.0/11").Contains(ra) {
		t.Errorf("DNS resource dialled at %v, want a proxy address in 100.96.0.0/11", ra)
	}
	usEcho(t, c, []byte("by name"))
	c.Close()

	u, err := uc.DialContext(ctx, "udp", netip.AddrPortFrom(usResourceIP, f.udpPort).String())
	if err != nil {
		t.Fatalf("dial UDP: %v", err)
	}
	defer u.Close()
	buf := make([]byte, 100)
	ok := false
	for try := 0; try < 20 && !ok; try++ { // UDP: resend on loss
		if _, err := u.Write([]byte("datagram")); err != nil {
			t.Fatal(err)
		}
		_ = u.SetReadDeadline(time.Now().Add(time.Second))
		n, err := u.Read(buf)
		ok = err == nil && string(buf[:n]) == "datagram"
	}
	if !ok {
		t.Fatal("no UDP echo through the userspace gateway")
	}
	fs := f.gwTun.Device().ForwardStats()
	if fs.TCPForwarded < 2 || fs.UDPFlows < 1 {
		t.Errorf("forward stats: %+v", fs)
	}
	st := uc.Client().Status()
	if len(st.Gateways) != 1 || !st.Gateways[0].Connected || st.Gateways[0].Path != snownet.PathDirect {
		t.Errorf("gateway status: %+v", st.Gateways)
	}
}

// TestUserspaceHTTP: the http.Transport reaches the resource by name and
// by address, and a relay-only client gets there too.
func TestUserspaceHTTP(t *testing.T) {
	f := usSetup(t, gwTestLogger(t))
	for _, host := range []string{usDNSName, usResourceIP.String()} {
		body := usGet(t, f.client, fmt.Sprintf("http://%s/", net.JoinHostPort(host, fmt.Sprint(f.webPort))))
		if !strings.HasPrefix(body, "hello from the resource") {
			t.Fatalf("GET via %s: %q", host, body)
		}
	}
	relayed := usStartClient(t, f.portal, gwTestLogger(t).Named("relayed"), func(c *ClientConfig) {
		c.FirezoneID = "us-client-relayed"
		c.Snownet = func(s *snownet.Config) { s.DisableHostCandidates, s.DisableSrflxCandidates = true, true }
	})
	body := usGet(t, relayed, fmt.Sprintf("http://%s/", net.JoinHostPort(usDNSName, fmt.Sprint(f.webPort))))
	if !strings.HasPrefix(body, "hello from the resource") {
		t.Fatalf("relayed GET: %q", body)
	}
	if st := relayed.Client().Status(); len(st.Gateways) != 1 || st.Gateways[0].Path != snownet.PathRelayed {
		t.Fatalf("relay-only client's path: %+v", st.Gateways)
	}
}

func usGet(t testing.TB, uc *UserspaceClient, url string) string {
	t.Helper()
	tr := uc.Transport()
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: usWait}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// TestUserspaceFilterBlocksPort: the resource's filters allow some ports;
// a port they do not list is refused by the gateway's access control in
// userspace mode as in kernel mode, although a server listens there, and
// the server never sees a connection.
func TestUserspaceFilterBlocksPort(t *testing.T) {
	f := usSetup(t, gwTestLogger(t))
	ctx := usCtx(t)
	// Allowed first, so the connection to the gateway exists.
	c, err := f.client.DialContext(ctx, "tcp", netip.AddrPortFrom(usResourceIP, f.tcpPort).String())
	if err != nil {
		t.Fatal(err)
	}
	usEcho(t, c, []byte("allowed"))
	c.Close()

	before := f.gw.Status().Drops.ByVerdict[acl.DropFiltered]
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err = f.client.DialContext(dctx, "tcp", netip.AddrPortFrom(usResourceIP, f.blocked).String())
	if err == nil {
		c.Close()
		t.Fatal("dial to a port the filters do not allow succeeded")
	}
	t.Logf("blocked dial: %v", err)
	if n := f.blockedHits.get(); n != 0 {
		t.Fatalf("the blocked server saw %d connections", n)
	}
	if after := f.gw.Status().Drops.ByVerdict[acl.DropFiltered]; after <= before {
		t.Fatalf("gateway filter drops %d → %d", before, after)
	}
	if fs := f.gwTun.Device().ForwardStats(); fs.TCPForwarded != 1 {
		t.Fatalf("forwarded connections: %+v", fs)
	}
}

// TestUserspaceClientCloseReleasesGoroutines: after a client has dialled
// TCP and UDP and made HTTP requests, Close stops every goroutine it
// started (checked once the gateway and portal it used are gone too).
func TestUserspaceClientCloseReleasesGoroutines(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) }) // runs after every other cleanup
	f := usSetup(t, gwTestLogger(t))
	ctx := usCtx(t)
	c, err := f.client.DialContext(ctx, "tcp", netip.AddrPortFrom(usResourceIP, f.tcpPort).String())
	if err != nil {
		t.Fatal(err)
	}
	usEcho(t, c, []byte("x"))
	u, err := f.client.DialContext(ctx, "udp", netip.AddrPortFrom(usResourceIP, f.udpPort).String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = u.Write([]byte("y"))
	tr := f.client.Transport()
	resp, err := (&http.Client{Transport: tr}).Get(fmt.Sprintf("http://%s:%d/", usDNSName, f.webPort))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// c, u and the transport's idle connection stay open: Close must
	// release them.
	done := make(chan struct{})
	go func() { f.client.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(usWait):
		t.Fatal("Close did not return")
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still readable after Close")
	}
	if _, err := f.client.DialContext(ctx, "tcp", "10.99.0.10:1"); !errors.Is(err, ErrUserspaceClientClosed) {
		t.Fatalf("dial after Close: %v, want ErrUserspaceClientClosed", err)
	}
	select {
	case <-f.client.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
}

// TestUserspacePing: an echo request to a resource crosses the tunnel, the
// userspace gateway pings the resource from the host and the reply comes
// back (needs ping sockets or root on the gateway's host).
func TestUserspacePing(t *testing.T) {
	if !usCanPing() {
		if os.Getenv("CI") != "" {
			t.Fatal("CI: no ICMP socket available (run as root or widen net.ipv4.ping_group_range)")
		}
		t.Skip("needs root or unprivileged ping sockets (net.ipv4.ping_group_range)")
	}
	f := usSetup(t, gwTestLogger(t))
	ctx := usCtx(t)
	if err := f.client.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	var err error
	for seq := uint16(1); seq <= 5; seq++ { // the first may be buffered while connecting
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = f.client.Device().Ping(pctx, usResourceIP, seq, []byte("gozone"))
		cancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no echo reply through the userspace gateway: %v (forwarder %+v)", err, f.gwTun.Device().ForwardStats())
	}
	if fs := f.gwTun.Device().ForwardStats(); fs.EchoReplies == 0 {
		t.Fatalf("forwarder stats: %+v", fs)
	}
}

// usCanPing reports whether this process may open an ICMP socket.
func usCanPing() bool {
	if c, err := icmp.ListenPacket("udp4", "127.0.0.1"); err == nil {
		c.Close()
		return true
	}
	if c, err := icmp.ListenPacket("ip4:icmp", "127.0.0.1"); err == nil {
		c.Close()
		return true
	}
	return false
}

// TestUserspaceClientTokenRejected: a fatal session error reaches the
// embedding program through WaitReady, DialContext and Err.
func TestUserspaceClientTokenRejected(t *testing.T) {
	f := &usFixture{tcpPort: 1, udpPort: 2, webPort: 3, sink: 4}
	p, err := devportal.New(devportal.Options{Config: usPortalConfig(t, f), RelayListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if _, err := p.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	uc, err := NewUserspaceClient(ClientConfig{APIURL: p.URL(), Token: "wrong-token-0123456789", FirezoneID: "bad", HostIP: netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uc.Start()
	ctx := usCtx(t)
	if err := uc.WaitReady(ctx); !errors.Is(err, ErrClientTokenRejected) {
		t.Fatalf("WaitReady: %v, want ErrClientTokenRejected", err)
	}
	if _, err := uc.DialContext(ctx, "tcp", "10.99.0.10:80"); !errors.Is(err, ErrClientTokenRejected) {
		t.Fatalf("DialContext: %v", err)
	}
	if !errors.Is(uc.Err(), ErrClientTokenRejected) {
		t.Fatalf("Err: %v", uc.Err())
	}
}

// TestUserspaceClientCloseWithoutStart: a client that never ran releases
// its sockets and stack on Close, and Start after Close does nothing.
func TestUserspaceClientCloseWithoutStart(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	uc, err := NewUserspaceClient(ClientConfig{APIURL: "ws://127.0.0.1:1", Token: "t", FirezoneID: "never", HostIP: netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	if err := uc.Close(); err != nil {
		t.Fatal(err)
	}
	uc.Start()
	select {
	case <-uc.Done():
	default:
		t.Fatal("Done open after Close")
	}
	if _, err := uc.DialContext(context.Background(), "tcp", "10.99.0.10:80"); !errors.Is(err, ErrUserspaceClientClosed) {
		t.Fatalf("dial after Close: %v", err)
	}
	goleak.VerifyNone(t, opt)
}
