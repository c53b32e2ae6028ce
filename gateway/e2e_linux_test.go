package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/gozone/gozone/internal/netns"
	"github.com/gozone/gozone/internal/testproc"
	"github.com/gozone/gozone/internal/topo"
)

// End-to-end: the dev portal binary on the topology's portal host, this
// package's gateway binary on the gateway host (in a private mount
// namespace whose /etc has a hosts file for the DNS resource), the real
// client binary on the client host, and TCP/UDP services on the resource
// host.

const (
	e2eGatewayToken = "gw-token-e2e-0123456789"
	e2eClientToken  = "client-token-e2e-012345"
	e2ePortalPort   = 8080
	e2eGatewayPort  = 51820
)

// e2eBins are the binaries of the end-to-end tests (built once per test
// process by testproc.Build).
type e2eBins struct{ gateway, client string }

type e2eEnv struct {
	tp     *topo.Topology
	bins   e2eBins
	apiURL string
	etcGW  string
}

func startPortal(t *testing.T) *e2eEnv {
	return startPortalIn(t, topo.Options{})
}

func startPortalIn(t *testing.T, opts topo.Options) *e2eEnv {
	t.Helper()
	env := &e2eEnv{bins: e2eBins{gateway: testproc.Build(t, testproc.GatewayPkg), client: testproc.Build(t, testproc.ClientPkg)}}
	tp := topo.Build(t, opts)
	env.tp = tp
	portal := testproc.Portal{
		Config: `
account: {slug: e2e}
sites:
  - {name: hq, gateway_tokens: ["` + e2eGatewayToken + `"]}
actors:
  - {name: alice, groups: [eng], tokens: ["` + e2eClientToken + `"]}
resources:
  - {name: web, type: ip, address: ` + tp.Resource.IPv4.String() + `, sites: [hq], filters: [{protocol: tcp, ports: "80"}, {protocol: udp, ports: "7"}]}
  - {name: svc, type: dns, address: "*.svc.corp", sites: [hq], ip_stack: ipv4_only}
  - {name: crm, type: ip, address: 10.20.0.111, sites: [hq]}
policies:
  - {group: eng, resource: web}
  - {group: eng, resource: svc}
relays:
  builtin: {enabled: true, public_ip: ` + tp.Portal.IPv4.String() + `}
`,
		Listen:      netip.AddrPortFrom(tp.Portal.IPv4, e2ePortalPort),
		RelayListen: netip.AddrPortFrom(tp.Portal.IPv4, 3478),
		In:          tp.Portal.NS,
		From:        tp.Client,
	}
	testproc.StartPortal(t, portal)
	env.apiURL = portal.URL()
	// The gateway's private /etc: the DNS resource's name resolves from
	// hosts (the topology has no DNS server); its nameserver is a DNS
	// server on the resource host (serveResourceDNS), for the queries
	// clients forward to the gateway's :53535.
	env.etcGW = testproc.EtcDir(t, map[string]string{
		"hosts":         "127.0.0.1 localhost\n" + tp.Resource.IPv4.String() + " web.svc.corp\n",
		"resolv.conf":   "nameserver " + tp.Resource.IPv4.String() + "\n",
		"nsswitch.conf": "hosts: files dns\n",
	})
	return env
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// startGateway runs the gateway binary on the gateway host with a private
// /etc.
func (env *e2eEnv) startGateway(t *testing.T, token string, args ...string) *testproc.Proc {
	t.Helper()
	base := []string{"--log-format", "json", "--tun-name", "tun-gw", "--id-file", filepath.Join(t.TempDir(), "gateway_id"),
		"--health-check-addr", "127.0.0.1:8080", "--listen-port", fmt.Sprint(e2eGatewayPort),
		// Leave net.core.{r,w}mem_max alone: the test must not touch host-wide settings.
		"--no-inc-buf"}
	cmd := testproc.WithEtc(env.etcGW, env.bins.gateway, append(base, args...)...)
	cmd.Env = append(os.Environ(), "FIREZONE_API_URL="+env.apiURL, "FIREZONE_NAME=e2e-gateway", "RUST_LOG=info")
	cmd.Env = append(cmd.Env, "FIREZONE_TOKEN="+token)
	return testproc.Start(t, env.tp.Gateway.NS, "gateway", cmd)
}

func (env *e2eEnv) startClient(t *testing.T, etcDir string) *testproc.Proc {
	t.Helper()
	cmd := testproc.WithEtc(etcDir, env.bins.client, "--log-format", "json", "--tun-name", "tun-fz", "--dns-control", "etc-resolv-conf")
	cmd.Env = append(os.Environ(), "FIREZONE_API_URL="+env.apiURL, "FIREZONE_ID=e2e-client-1", "FIREZONE_NAME=e2e-client", "FIREZONE_TOKEN="+e2eClientToken)
	return testproc.Start(t, env.tp.Client.NS, "client", cmd)
}

// serveTCP answers every connection on ap with a greeting and keeps it
// open until the peer closes.
func serveTCP(t *testing.T, h *topo.Host, ap netip.AddrPort, greeting string) {
	t.Helper()
	testproc.ServeTCP(t, h, ap, func(c net.Conn) {
		_, _ = io.WriteString(c, greeting)
		_, _ = io.Copy(io.Discard, c)
	})
}

// serveResourceDNS answers TXT queries with "site-dns" on ap.
func serveResourceDNS(t *testing.T, h *topo.Host, ap netip.AddrPort) {
	t.Helper()
	c, err := h.ListenUDP(ap)
	must(t, err)
	srv := &mdns.Server{PacketConn: c, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		if len(r.Question) == 1 && r.Question[0].Qtype == mdns.TypeTXT {
			rr, _ := mdns.NewRR(r.Question[0].Name + ` 60 IN TXT "site-dns"`)
			m.Answer = append(m.Answer, rr)
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
}

func serveUDPEcho(t *testing.T, h *topo.Host, ap netip.AddrPort) {
	t.Helper()
	c, err := h.ListenUDP(ap)
	must(t, err)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteToUDPAddrPort(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
}

// readGreeting dials ap from h and reads the greeting line.
func readGreeting(h *topo.Host, ap netip.AddrPort, timeout time.Duration) (net.Conn, string, error) {
	c, err := h.DialTCP(ap, timeout)
	if err != nil {
		return nil, "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		c.Close()
		return nil, "", err
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, string(buf[:n]), nil
}

func udpExchange(h *topo.Host, ap netip.AddrPort, msg string, timeout time.Duration) (string, error) {
	var out string
	err := h.Do(func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 256)
		for i := 0; i < 10; i++ {
			if _, err := c.Write([]byte(msg)); err != nil {
				return err
			}
			_ = c.SetReadDeadline(time.Now().Add(timeout / 10))
			n, err := c.Read(buf)
			if err == nil {
				out = string(buf[:n])
				return nil
			}
		}
		return errors.New("no UDP answer")
	})
	return out, err
}

func TestE2EGatewayBinary(t *testing.T) {
	netns.RequireRoot(t)
	env := startPortal(t)
	tp := env.tp
	res := tp.Resource.IPv4
	serveTCP(t, tp.Resource, netip.AddrPortFrom(netip.IPv4Unspecified(), 80), "hello-80\n")
	serveTCP(t, tp.Resource, netip.AddrPortFrom(netip.IPv4Unspecified(), 22), "hello-22\n")
	serveUDPEcho(t, tp.Resource, netip.AddrPortFrom(netip.IPv4Unspecified(), 7))
	serveResourceDNS(t, tp.Resource, netip.AddrPortFrom(res, 53))
	// crm's address lives on the resource host too; alice has no policy for it.
	must(t, tp.Resource.NS.AddAddr(tp.Resource.Iface, netip.MustParsePrefix("10.20.0.111/24")))

	gw := env.startGateway(t, e2eGatewayToken, "--masquerade")
	gw.WaitLog(t, "portal init applied")

	etcCl := testproc.EtcDir(t, map[string]string{"resolv.conf": "nameserver 192.0.2.53\n"})
	rc := filepath.Join(etcCl, "resolv.conf")
	cl := env.startClient(t, etcCl)
	cl.WaitLog(t, "tunnel is up")

	// TCP through the filter.
	conn, greet, err := readGreeting(tp.Client, netip.AddrPortFrom(res, 80), 30*time.Second)
	if err != nil || greet != "hello-80\n" {
		t.Fatalf("TCP 80: %q %v", greet, err)
	}
	defer conn.Close()
	gw.WaitLog(t, "connection established")
	// UDP through the filter.
	if out, err := udpExchange(tp.Client, netip.AddrPortFrom(res, 7), "ping", 20*time.Second); err != nil || out != "echo:ping" {
		t.Fatalf("UDP 7: %q %v", out, err)
	}
	// A port outside the filter gets nothing through (ICMP prohibited:
	// the dial fails quickly instead of timing out).
	if c, g, err := readGreeting(tp.Client, netip.AddrPortFrom(res, 22), 10*time.Second); err == nil {
		c.Close()
		t.Fatalf("TCP 22 outside the filter answered %q", g)
	}
	// The resource alice is not authorized for is unreachable.
	if c, g, err := readGreeting(tp.Client, netip.MustParseAddrPort("10.20.0.111:80"), 5*time.Second); err == nil {
		c.Close()
		t.Fatalf("unauthorized resource answered %q", g)
	}

	// Garbage at the gateway's UDP socket while traffic flows: the flow
	// keeps working, only the garbage counter moves.
	stop := make(chan struct{})
	garbageDone := make(chan error, 1)
	go func() {
		garbageDone <- tp.GatewayRouter.Do(func() error {
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(tp.Gateway.IPv4, e2eGatewayPort)))
			if err != nil {
				return err
			}
			defer c.Close()
			junk := []byte("\xde\xad\xbe\xef garbage that is neither WireGuard nor STUN")
			for i := 0; i < 200; i++ {
				select {
				case <-stop:
					return nil
				default:
				}
				junk[0] = byte(i)
				_, _ = c.Write(junk)
				time.Sleep(2 * time.Millisecond)
			}
			return nil
		})
	}()
	for i := 0; i < 5; i++ {
		if out, err := udpExchange(tp.Client, netip.AddrPortFrom(res, 7), fmt.Sprint("during-garbage-", i), 20*time.Second); err != nil || out != fmt.Sprint("echo:during-garbage-", i) {
			t.Fatalf("UDP during garbage: %q %v", out, err)
		}
	}
	close(stop)
	must(t, <-garbageDone)

	// DNS resource: the client's stub gives proxy IPs, the gateway
	// resolves web.svc.corp from its hosts file and NATs.
	sentinel := testproc.WaitNameserver(t, rc, "100.100.111.")
	var proxy netip.Addr
	must(t, tp.Client.Do(func() error {
		m := new(mdns.Msg)
		m.SetQuestion("web.svc.corp.", mdns.TypeA)
		c := &mdns.Client{Timeout: 5 * time.Second}
		var err error
		for i := 0; i < 5; i++ {
			var r *mdns.Msg
			if r, _, err = c.Exchange(m, netip.AddrPortFrom(sentinel, 53).String()); err == nil && len(r.Answer) > 0 {
				proxy, _ = netip.AddrFromSlice(r.Answer[0].(*mdns.A).A.To4())
				return nil
			}
		}
		return fmt.Errorf("DNS: %v", err)
	}))
	if !strings.HasPrefix(proxy.String(), "100.") {
		t.Fatalf("proxy IP %v", proxy)
	}
	c2, greet, err := readGreeting(tp.Client, netip.AddrPortFrom(proxy, 80), 30*time.Second)
	if err != nil || greet != "hello-80\n" {
		t.Fatalf("TCP via DNS proxy IP %v: %q %v", proxy, greet, err)
	}
	c2.Close()
	gw.WaitLog(t, "DNS resource NAT active", "web.svc.corp")

	// Other record types of a DNS-resource name go through the tunnel to
	// the gateway's DNS server on :53535, which asks its own nameserver.
	must(t, tp.Client.Do(func() error {
		m := new(mdns.Msg)
		m.SetQuestion("web.svc.corp.", mdns.TypeTXT)
		c := &mdns.Client{Timeout: 5 * time.Second}
		var last string
		for i := 0; i < 5; i++ {
			r, _, err := c.Exchange(m, netip.AddrPortFrom(sentinel, 53).String())
			if err == nil && len(r.Answer) == 1 && strings.Contains(r.Answer[0].String(), "site-dns") {
				return nil
			}
			last = fmt.Sprint(r, err)
		}
		return fmt.Errorf("TXT via the gateway's DNS server: %s", last)
	}))

	// The health check reports ready.
	must(t, tp.Gateway.Do(func() error {
		c, err := net.DialTimeout("tcp", "127.0.0.1:8080", 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		fmt.Fprint(c, "GET /readyz HTTP/1.0\r\n\r\n")
		b, _ := io.ReadAll(c)
		if !strings.HasPrefix(string(b), "HTTP/1.0 200") {
			return fmt.Errorf("readyz: %q", b)
		}
		return nil
	}))
	// The masquerade table is installed while the gateway runs.
	out, _ := tp.Gateway.Run(context.Background(), "nft", "list", "tables")
	if len(out) > 0 && !strings.Contains(string(out), "gozone_gw_tun-gw") {
		t.Fatalf("masquerade table missing: %s", out)
	}

	// SIGTERM: goodbye to the client, exit 0, rules removed.
	gw.Signal(t, syscall.SIGTERM)
	if code := gw.ExitCode(t, testproc.Timeout); code != 0 {
		t.Fatalf("gateway exit code %d after SIGTERM", code)
	}
	cl.WaitLog(t, "gateway said goodbye")
	line := gw.WaitLog(t, "gateway closing")
	if strings.Contains(line, `"garbage_datagrams":0,`) || !strings.Contains(line, "garbage_datagrams") {
		t.Fatalf("garbage not counted: %s", line)
	}
	out, _ = tp.Gateway.Run(context.Background(), "nft", "list", "tables")
	if strings.Contains(string(out), "gozone_gw_tun-gw") {
		t.Fatalf("masquerade table left behind: %s", out)
	}
}

// TestE2EGatewayRelayed: both sites behind symmetric NATs, so only the
// relay connects client and gateway; traffic still flows and is filtered.
func TestE2EGatewayRelayed(t *testing.T) {
	netns.RequireRoot(t)
	env := startPortalIn(t, topo.Options{ClientNAT: topo.NATSymmetric, GatewayNAT: topo.NATSymmetric})
	tp := env.tp
	serveTCP(t, tp.Resource, netip.AddrPortFrom(netip.IPv4Unspecified(), 80), "hello-80\n")
	gw := env.startGateway(t, e2eGatewayToken, "--masquerade")
	gw.WaitLog(t, "portal init applied")
	cl := env.startClient(t, testproc.EtcDir(t, map[string]string{"resolv.conf": "nameserver 192.0.2.53\n"}))
	cl.WaitLog(t, "tunnel is up")
	conn, greet, err := readGreeting(tp.Client, netip.AddrPortFrom(tp.Resource.IPv4, 80), 45*time.Second)
	if err != nil || greet != "hello-80\n" {
		t.Fatalf("TCP 80 over the relay: %q %v", greet, err)
	}
	conn.Close()
	gw.WaitLog(t, "connection established", `"path":"relayed"`)
	if c, g, err := readGreeting(tp.Client, netip.AddrPortFrom(tp.Resource.IPv4, 22), 5*time.Second); err == nil {
		c.Close()
		t.Fatalf("TCP 22 outside the filter answered %q", g)
	}
	gw.Signal(t, syscall.SIGTERM)
	if code := gw.ExitCode(t, testproc.Timeout); code != 0 {
		t.Fatalf("gateway exit code %d", code)
	}
}

func TestE2EGatewayBadToken(t *testing.T) {
	netns.RequireRoot(t)
	env := startPortal(t)
	gw := env.startGateway(t, "gw-token-wrong-000000000")
	if code := gw.ExitCode(t, testproc.Timeout); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	gw.WaitLog(t, "gateway: the portal rejected the token")
}
