package netns

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	vns "github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

var (
	pA = netip.MustParsePrefix("10.77.0.1/24")
	pB = netip.MustParsePrefix("10.77.0.2/24")
	p6 = netip.MustParsePrefix("fd77::1/64")
	q6 = netip.MustParsePrefix("fd77::2/64")
)

// pair builds two namespaces joined by a veth ("v0" on both sides) with
// addresses pA/p6 in a and pB/q6 in b.
func pair(t *testing.T) (a, b *NS) {
	t.Helper()
	a, b = New(t, "tA"), New(t, "tB")
	must(t, Veth(a, "v0", b, "v0"))
	must(t, a.AddAddr("v0", pA))
	must(t, b.AddAddr("v0", pB))
	must(t, a.AddAddr("v0", p6))
	must(t, b.AddAddr("v0", q6))
	return a, b
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// listenUDP opens a UDP socket bound inside ns.
func listenUDP(t *testing.T, ns *NS, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	must(t, ns.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		return err
	}))
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange sends msg from c to dst and waits (bounded) for it on srv;
// it returns the source address srv saw.
func exchange(t *testing.T, c, srv *net.UDPConn, dst string, msg []byte) (netip.AddrPort, error) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(msg, netip.MustParseAddrPort(dst)); err != nil {
		return netip.AddrPort{}, err
	}
	buf := make([]byte, 1500)
	_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := srv.ReadFromUDPAddrPort(buf)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if !bytes.Equal(buf[:n], msg) {
		return from, fmt.Errorf("got %q, want %q", buf[:n], msg)
	}
	return from, nil
}

func TestNamespacesVethUDP(t *testing.T) {
	RequireRoot(t)
	a, b := pair(t)
	if a.Name() == b.Name() {
		t.Fatalf("namespace names not unique: %s", a.Name())
	}
	for _, tc := range []struct{ cli, srv, dst string }{
		{"10.77.0.1:0", "10.77.0.2:4000", "10.77.0.2:4000"},
		{"[fd77::1]:0", "[fd77::2]:4000", "[fd77::2]:4000"},
	} {
		srv := listenUDP(t, b, tc.srv)
		cli := listenUDP(t, a, tc.cli)
		from, err := exchange(t, cli, srv, tc.dst, []byte("hello "+tc.dst))
		if err != nil {
			t.Fatalf("%s: %v", tc.dst, err)
		}
		if want := cli.LocalAddr().(*net.UDPAddr).AddrPort().Port(); from.Port() != want {
			t.Fatalf("source %v, want port %d", from, want)
		}
		// The server's address must not exist in the root namespace, which
		// proves the sockets really live in the test's namespaces.
		if _, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tc.srv))); err == nil {
			t.Fatalf("%s is bindable in the root namespace", tc.srv)
		}
	}
}

func TestNamespaceRemovedOnCleanup(t *testing.T) {
	RequireRoot(t)
	var name string
	t.Run("inner", func(t *testing.T) {
		name = New(t, "tGone").Name()
		if _, err := os.Stat("/run/netns/" + name); err != nil {
			if _, err2 := os.Stat("/var/run/netns/" + name); err2 != nil {
				t.Fatalf("namespace file missing: %v", err)
			}
		}
	})
	if h, err := vns.GetFromName(name); err == nil {
		h.Close()
		t.Fatalf("namespace %s still exists after cleanup", name)
	}
}

func TestStartInNamespace(t *testing.T) {
	RequireRoot(t)
	a, b := New(t, "tCmd"), New(t, "tCmd")
	must(t, Veth(a, "probe7", b, "other7"))
	cmd := exec.CommandContext(t.Context(), "cat", "/proc/net/dev")
	var out bytes.Buffer
	cmd.Stdout = &out
	must(t, a.Start(cmd))
	must(t, cmd.Wait())
	if !bytes.Contains(out.Bytes(), []byte("probe7")) || bytes.Contains(out.Bytes(), []byte("other7")) {
		t.Fatalf("child did not run in namespace %s:\n%s", a.Name(), out.String())
	}
}

func TestSysctlPerNamespace(t *testing.T) {
	RequireRoot(t)
	a, b := New(t, "tSys"), New(t, "tSys")
	must(t, a.EnableForwarding())
	read := func(ns *NS) string {
		var v []byte
		must(t, ns.Do(func() (err error) {
			v, err = os.ReadFile("/proc/sys/net/ipv4/ip_forward")
			return err
		}))
		return string(bytes.TrimSpace(v))
	}
	if got := read(a); got != "1" {
		t.Fatalf("ip_forward in a = %q, want 1", got)
	}
	if got := read(b); got != "0" {
		t.Fatalf("ip_forward in b = %q, want 0 (sysctl leaked across namespaces)", got)
	}
}

// router builds inside(10.78.1.2) -- r -- outside(10.78.2.2) with r
// masquerading towards outside.
func router(t *testing.T, mode NATMode) (in, out *NS) {
	t.Helper()
	in, r, out := New(t, "tIn"), New(t, "tR"), New(t, "tOut")
	must(t, Veth(in, "v0", r, "lan"))
	must(t, Veth(r, "wan", out, "v0"))
	must(t, in.AddAddr("v0", netip.MustParsePrefix("10.78.1.2/24")))
	must(t, r.AddAddr("lan", netip.MustParsePrefix("10.78.1.1/24")))
	must(t, r.AddAddr("wan", netip.MustParsePrefix("10.78.2.1/24")))
	must(t, out.AddAddr("v0", netip.MustParsePrefix("10.78.2.2/24")))
	must(t, in.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), netip.MustParseAddr("10.78.1.1"), ""))
	must(t, r.EnableForwarding())
	must(t, r.Masquerade("wan", mode))
	return in, out
}

func TestMasquerade(t *testing.T) {
	RequireRoot(t)
	for _, mode := range []NATMode{EndpointIndependent, Symmetric} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			in, out := router(t, mode)
			cli := listenUDP(t, in, "10.78.1.2:5555")
			var ports []uint16
			for i := range 4 {
				dst := fmt.Sprintf("10.78.2.2:%d", 6000+i)
				srv := listenUDP(t, out, dst)
				from, err := exchange(t, cli, srv, dst, []byte("x"))
				if err != nil {
					t.Fatal(err)
				}
				if from.Addr() != netip.MustParseAddr("10.78.2.1") {
					t.Fatalf("source %v not masqueraded to the router's address", from)
				}
				ports = append(ports, from.Port())
			}
			allSame := true
			for _, p := range ports {
				allSame = allSame && p == ports[0]
			}
			switch mode {
			case EndpointIndependent:
				if !allSame || ports[0] != 5555 {
					t.Fatalf("endpoint-independent NAT mapped ports %v, want all 5555", ports)
				}
			case Symmetric:
				if allSame {
					t.Fatalf("symmetric NAT mapped every destination to port %d", ports[0])
				}
			}
		})
	}
}

func TestRandomDrop(t *testing.T) {
	RequireRoot(t)
	count := func(percent, sent int) int {
		a, b := pair(t)
		must(t, b.RandomDrop("v0", percent))
		srv := listenUDP(t, b, "10.77.0.2:7000")
		cli := listenUDP(t, a, "10.77.0.1:0")
		dst := netip.MustParseAddrPort("10.77.0.2:7000")
		for i := range sent {
			if _, err := cli.WriteToUDPAddrPort([]byte{byte(i)}, dst); err != nil {
				t.Fatal(err)
			}
		}
		got := 0
		buf := make([]byte, 64)
		for {
			// All packets were sent already; a quiet second means the rest
			// were dropped.
			_ = srv.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := srv.ReadFromUDPAddrPort(buf); err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatal(err)
				}
				return got
			}
			got++
		}
	}
	if got := count(0, 200); got != 200 {
		t.Errorf("0%% drop delivered %d of 200", got)
	}
	if got := count(100, 200); got != 0 {
		t.Errorf("100%% drop delivered %d of 200", got)
	}
	// 50%: P(outside 40..160 of 200) is astronomically small.
	if got := count(50, 200); got < 40 || got > 160 {
		t.Errorf("50%% drop delivered %d of 200", got)
	}
}

func TestDoRunsInNamespace(t *testing.T) {
	RequireRoot(t)
	a := New(t, "tDo")
	root, err := vns.Get()
	must(t, err)
	defer root.Close()
	must(t, a.Do(func() error {
		cur, err := vns.Get()
		if err != nil {
			return err
		}
		defer cur.Close()
		if !cur.Equal(a.Handle()) {
			return errors.New("Do did not switch into the namespace")
		}
		return nil
	}))
	// After Do, a fresh goroutine (any thread) is back in the root namespace.
	done := make(chan bool)
	go func() {
		cur, err := vns.Get()
		ok := err == nil && cur.Equal(root)
		cur.Close()
		done <- ok
	}()
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("a thread was left in the test namespace")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("timeout")
	}
}

func TestSweepStale(t *testing.T) {
	RequireRoot(t)
	// pid 999999999 is above any pid_max, so its owner is certainly gone.
	const name = "tStale-999999999-1-abcdef"
	n, err := createNamed(name)
	must(t, err)
	n.nl.Close()
	n.handle.Close()
	t.Cleanup(func() { _ = vns.DeleteNamed(name) })
	live := New(t, "tLive") // not stale: this process is running
	sweepStale()
	if h, err := vns.GetFromName(name); err == nil {
		h.Close()
		t.Fatalf("stale namespace %s survived the sweep", name)
	}
	if h, err := vns.GetFromName(live.Name()); err != nil {
		t.Fatalf("sweep removed a live namespace: %v", err)
	} else {
		h.Close()
	}
}

// TestPingAcrossVeth sends ICMP echo requests (raw sockets, v4 and v6)
// from a to b and expects the replies b's kernel sends.
func TestPingAcrossVeth(t *testing.T) {
	RequireRoot(t)
	a, _ := pair(t)
	for _, tc := range []struct {
		network, listen, dst string
		req, reply           icmp.Type
		proto                int
	}{
		{"ip4:icmp", "10.77.0.1", "10.77.0.2", ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply, 1},
		{"ip6:ipv6-icmp", "fd77::1", "fd77::2", ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, 58},
	} {
		var c *icmp.PacketConn
		must(t, a.Do(func() (err error) {
			c, err = icmp.ListenPacket(tc.network, tc.listen)
			return err
		}))
		defer c.Close()
		msg := icmp.Message{Type: tc.req, Body: &icmp.Echo{ID: 0x4242, Seq: 7, Data: []byte("gozone")}}
		wire, err := msg.Marshal(nil)
		must(t, err)
		dst := &net.IPAddr{IP: net.ParseIP(tc.dst)}
		if _, err := c.WriteTo(wire, dst); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		deadline := time.Now().Add(10 * time.Second)
		for {
			_ = c.SetReadDeadline(deadline)
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				t.Fatalf("%s: no echo reply: %v", tc.dst, err)
			}
			m, err := icmp.ParseMessage(tc.proto, buf[:n])
			if err != nil || m.Type != tc.reply {
				continue // e.g. our own request, or neighbour discovery
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == 0x4242 && e.Seq == 7 && from.String() == tc.dst {
				break
			}
		}
	}
}
