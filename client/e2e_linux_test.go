package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"os/exec"
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

// startClient runs the client binary in the client namespace. With etcDir
// it runs in a private mount namespace where that directory is
// bind-mounted over /etc (so the namespace has its own resolv.conf and the
// backup next to it never touches the host's /etc), with --dns-control
// etc-resolv-conf.
func (env *e2eEnv) startClient(t *testing.T, token, etcDir string, args ...string) *testproc.Proc {
	t.Helper()
	base := []string{"--log-format", "json", "--tun-name", "tun-fz"}
	var cmd *exec.Cmd
	if etcDir != "" {
		base = append(base, "--dns-control", "etc-resolv-conf")
		cmd = testproc.WithEtc(etcDir, env.clientBin, append(base, args...)...)
	} else {
		base = append(base, "--dns-control", "disabled")
		cmd = exec.Command(env.clientBin, append(base, args...)...)
	}
	cmd.Env = append(os.Environ(), "FIREZONE_API_URL="+env.apiURL, "FIREZONE_ID=e2e-client-1", "FIREZONE_NAME=e2e-client")
	if token != "" {
		cmd.Env = append(cmd.Env, "FIREZONE_TOKEN="+token)
	}
	return testproc.Start(t, env.tp.Client.NS, "client", cmd)
}

// portalKeys returns the public keys of the client's "portal joined" log
// lines, in order.
func portalKeys(cp *testproc.Proc) []string {
	var out []string
	for _, l := range strings.Split(cp.Log.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "portal joined" {
			if k, ok := m["public_key"].(string); ok {
				out = append(out, k)
			}
		}
	}
	return out
}

// dnsQuery asks server (a sentinel) from inside the client namespace.
func dnsQuery(t *testing.T, h *topo.Host, server netip.Addr, name string, qtype uint16, network string) *mdns.Msg {
	t.Helper()
	var resp *mdns.Msg
	err := h.Do(func() error {
		m := new(mdns.Msg)
		m.SetQuestion(name, qtype)
		c := &mdns.Client{Timeout: 5 * time.Second, Net: network}
		var err error
		for i := 0; i < 5; i++ {
			if resp, _, err = c.Exchange(m, netip.AddrPortFrom(server, 53).String()); err == nil {
				return nil
			}
		}
		return err
	})
	if err != nil {
		t.Fatalf("DNS query for %s: %v", name, err)
	}
	return resp
}

func TestE2E(t *testing.T) {
	netns.RequireRoot(t)
	env := startE2E(t, topo.Options{})
	tp := env.tp
	resource := netip.AddrPortFrom(tp.Resource.IPv4, 80)

	t.Run("exit once the tunnel is up", func(t *testing.T) {
		cp := env.startClient(t, e2eClientToken, "", "--exit")
		if code := cp.ExitCode(t, testproc.Timeout); code != 0 {
			t.Fatalf("exit code %d", code)
		}
		cp.WaitLog(t, "tunnel is up")
	})

	t.Run("token rejected", func(t *testing.T) {
		cp := env.startClient(t, "client-token-wrong-000000", "")
		if code := cp.ExitCode(t, testproc.Timeout); code != 1 {
			t.Fatalf("exit code %d, want 1", code)
		}
		cp.WaitLog(t, "gozone-client: the portal rejected the token")
	})

	t.Run("session", func(t *testing.T) {
		orig := "# the namespace's own resolv.conf\nnameserver 192.0.2.53\n"
		etcDir := testproc.EtcDir(t, map[string]string{"resolv.conf": orig})
		rc := filepath.Join(etcDir, "resolv.conf")
		cp := env.startClient(t, e2eClientToken, etcDir)
		cp.WaitLog(t, "tunnel is up")

		// The client pointed resolv.conf at its sentinel.
		sentinel := testproc.WaitNameserver(t, rc, "100.100.111.")

		// CIDR resource.
		body, err := httpGet(tp.Client, resource, "/", 30*time.Second)
		if err != nil || body != "hello from the resource\n" {
			t.Fatalf("GET CIDR resource: %q %v", body, err)
		}

		// DNS resource: the stub answers with a proxy IP, the gateway
		// NATs it to the resource.
		resp := dnsQuery(t, tp.Client, sentinel, "web.svc.corp.", mdns.TypeA, "udp")
		if len(resp.Answer) != 4 {
			t.Fatalf("A answer %v", resp)
		}
		tcpResp := dnsQuery(t, tp.Client, sentinel, "web.svc.corp.", mdns.TypeA, "tcp")
		if len(tcpResp.Answer) != 4 || tcpResp.Answer[0].String() != resp.Answer[0].String() {
			t.Fatalf("A answer over TCP %v", tcpResp)
		}
		proxy, _ := netip.AddrFromSlice(resp.Answer[0].(*mdns.A).A.To4())
		body, err = httpGet(tp.Client, netip.AddrPortFrom(proxy, 80), "/", 30*time.Second)
		if err != nil || body != "hello from the resource\n" {
			t.Fatalf("GET DNS resource via %v: %q %v", proxy, body, err)
		}

		// Unauthorized (no gateway online for it): a quick, clean failure.
		start := time.Now()
		_, err = tp.Client.DialTCP(netip.MustParseAddrPort("10.21.0.5:80"), 20*time.Second)
		if err == nil {
			t.Fatal("connected to a resource without a gateway")
		}
		if !errors.Is(err, syscall.EHOSTUNREACH) || time.Since(start) > 15*time.Second {
			t.Fatalf("dial error %v after %v, want host unreachable at once", err, time.Since(start))
		}
		cp.WaitLog(t, "access to resource refused: no gateway of the resource's sites is online", "nowhere", "offline")

		// SIGUSR1 logs the status: which gateway, which path, bytes.
		cp.Signal(t, syscall.SIGUSR1)
		cp.WaitLog(t, "status: gateway", `"connected":true`, `"path":"direct"`)
		cp.WaitLog(t, "status: resource", `"name":"nowhere"`, `"failure":"offline"`)

		// SIGHUP in the middle of a transfer: the transfer completes over
		// the re-established connection, and the portal saw a new key.
		const size = 6 << 20
		done := make(chan error, 1)
		go func() {
			b, err := httpGet(tp.Client, resource, "/stream?n=6291456", 3*time.Minute)
			if err == nil && len(b) != size {
				err = errors.New("short body")
			}
			done <- err
		}()
		time.Sleep(700 * time.Millisecond)
		cp.Signal(t, syscall.SIGHUP)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("transfer across SIGHUP: %v", err)
			}
		case <-time.After(4 * time.Minute):
			t.Fatal("transfer did not finish")
		}
		cp.WaitLog(t, "resetting the tunnel", "SIGHUP")
		keys := portalKeys(cp)
		if len(keys) < 2 || keys[0] == keys[len(keys)-1] {
			t.Fatalf("portal keys %v: want a new key after SIGHUP", keys)
		}

		// A network change (a new address on the LAN interface) resets the
		// tunnel too; the resource stays reachable.
		if err := tp.Client.NS.AddAddr(tp.Client.Iface, netip.MustParsePrefix("172.30.0.222/24")); err != nil {
			t.Fatal(err)
		}
		cp.WaitLog(t, "network changed: resetting the tunnel")
		cp.WaitLog(t, "resetting the tunnel", "network change")
		if body, err := httpGet(tp.Client, resource, "/", 30*time.Second); err != nil || body != "hello from the resource\n" {
			t.Fatalf("GET after a network change: %q %v", body, err)
		}

		// SIGTERM: exit 0, resolv.conf restored, TUN gone.
		cp.Signal(t, syscall.SIGTERM)
		if code := cp.ExitCode(t, testproc.Timeout); code != 0 {
			t.Fatalf("exit code %d after SIGTERM", code)
		}
		if b, _ := os.ReadFile(rc); string(b) != orig {
			t.Fatalf("resolv.conf not restored:\n%s", b)
		}
		if _, err := os.Stat(rc + ".before-firezone"); !os.IsNotExist(err) {
			t.Fatal("backup left behind")
		}
		out, _ := tp.Client.Run(context.Background(), "ip", "link", "show", "tun-fz")
		if !strings.Contains(string(out), "does not exist") {
			t.Fatalf("TUN still there: %s", out)
		}
	})
}

// TestE2ERelayed: both sites behind symmetric NATs, so hole punching
// cannot work and the connection goes through the portal's TURN relay;
// HTTP to the resource still works and the client reports a relayed path.
func TestE2ERelayed(t *testing.T) {
	netns.RequireRoot(t)
	env := startE2E(t, topo.Options{ClientNAT: topo.NATSymmetric, GatewayNAT: topo.NATSymmetric})
	cp := env.startClient(t, e2eClientToken, "")
	cp.WaitLog(t, "tunnel is up")
	resource := netip.AddrPortFrom(env.tp.Resource.IPv4, 80)
	body, err := httpGet(env.tp.Client, resource, "/", 60*time.Second)
	if err != nil || body != "hello from the resource\n" {
		t.Fatalf("GET through the relay: %q %v", body, err)
	}
	cp.WaitLog(t, "connection established", `"path":"relayed"`)
	cp.Signal(t, syscall.SIGTERM)
	if code := cp.ExitCode(t, testproc.Timeout); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// TestE2EInternetResource: with --activate-internet-resource, traffic to
// an internet host leaves through the gateway's site (the host sees the
// gateway router's address), while the client's own portal, relay and
// gateway traffic stays outside the tunnel (bypass routes), and CIDR
// resources keep working.
func TestE2EInternetResource(t *testing.T) {
	netns.RequireRoot(t)
	env := startE2E(t, topo.Options{})
	tp := env.tp
	echo := netip.AddrPortFrom(tp.Relay.IPv4, 8081)
	if err := tp.Relay.UDPSourceEcho(echo); err != nil {
		t.Fatal(err)
	}
	seenFrom := func() string {
		t.Helper()
		conn, err := tp.Client.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		buf := make([]byte, 128)
		for i := 0; i < 30; i++ {
			if _, err := conn.WriteToUDPAddrPort([]byte("who am i"), echo); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
			if n, err := conn.Read(buf); err == nil {
				ap, err := netip.ParseAddrPort(string(buf[:n]))
				if err != nil {
					t.Fatalf("echo said %q", buf[:n])
				}
				return ap.Addr().String()
			}
		}
		t.Fatal("no answer from the internet host")
		return ""
	}
	if got := seenFrom(); got != tp.ClientRouter.IPv4.String() {
		t.Fatalf("without the client, the internet sees %s, want the client router %s", got, tp.ClientRouter.IPv4)
	}
	cp := env.startClient(t, e2eClientToken, "", "--activate-internet-resource")
	cp.WaitLog(t, "tunnel is up")
	if got := seenFrom(); got != tp.GatewayRouter.IPv4.String() {
		t.Fatalf("through the internet resource the host sees %s, want the gateway router %s", got, tp.GatewayRouter.IPv4)
	}
	body, err := httpGet(tp.Client, netip.AddrPortFrom(tp.Resource.IPv4, 80), "/", 30*time.Second)
	if err != nil || body != "hello from the resource\n" {
		t.Fatalf("CIDR resource with the internet resource on: %q %v", body, err)
	}
	// The portal (which also runs the relay) and the gateway's public
	// candidate address are reached outside the tunnel (bypass host
	// routes); any other internet address goes into it.
	for _, c := range []struct {
		addr   netip.Addr
		tunnel bool
	}{{tp.Portal.IPv4, false}, {tp.GatewayRouter.IPv4, false}, {tp.Relay.IPv4, true}, {netip.MustParseAddr("203.0.113.77"), true}} {
		out, err := tp.Client.Run(context.Background(), "ip", "route", "get", c.addr.String())
		if err != nil {
			t.Fatalf("ip route get: %v %s", err, out)
		}
		if inTunnel := strings.Contains(string(out), "dev tun-fz"); inTunnel != c.tunnel {
			t.Fatalf("route to %v: %s (want in tunnel: %v)", c.addr, out, c.tunnel)
		}
	}
	// The portal connection never looped into the tunnel.
	time.Sleep(2 * time.Second)
	if n := len(portalKeys(cp)); n != 1 {
		t.Fatalf("joined the portal %d times", n)
	}
	cp.Signal(t, syscall.SIGTERM)
	if code := cp.ExitCode(t, testproc.Timeout); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	// Bypass and tunnel routes are gone: the internet is reached directly
	// again.
	if got := seenFrom(); got != tp.ClientRouter.IPv4.String() {
		t.Fatalf("after exit the internet sees %s", got)
	}
}
