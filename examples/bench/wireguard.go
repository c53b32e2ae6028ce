package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gozone/gozone/internal/topo"
)

// Raw wireguard-go point-to-point, the yardstick: the wireguard-go
// binary built from the module version pinned in go.mod, one process in
// the client's namespace and one in the gateway's, configured over their
// UAPI sockets. Tunnel addresses mirror what a gozone session would use,
// and the client routes the resource network through the tunnel, so the
// path (client → gateway → resource) and the MTU are the same as gozone's.
var (
	wgClientIP  = netip.MustParsePrefix("100.66.0.1/32")
	wgGatewayIP = netip.MustParsePrefix("100.66.0.2/32")
)

const (
	wgGatewayPort = 51820
	wgClientPort  = 51821
	uapiDir       = "/var/run/wireguard"
)

// buildWireGuardGo builds golang.zx2c4.com/wireguard (the version in
// go.mod) into dir. It must run inside the gozone module.
func buildWireGuardGo(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "wireguard-go")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "golang.zx2c4.com/wireguard")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build wireguard-go (run from the gozone checkout, or pass --wireguard-go): %v: %s", err, out)
	}
	return bin, nil
}

type wgKey struct{ priv, pub string } // hex, as UAPI wants them

func newWGKey() (wgKey, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return wgKey{}, err
	}
	return wgKey{priv: hex.EncodeToString(k.Bytes()), pub: hex.EncodeToString(k.PublicKey().Bytes())}, nil
}

// uapiSet sends one set=1 transaction to a wireguard-go UAPI socket. The
// socket lives on the file system, so any namespace can reach it.
func uapiSet(iface, conf string) error {
	c, err := net.DialTimeout("unix", filepath.Join(uapiDir, iface+".sock"), 5*time.Second)
	if err != nil {
		return fmt.Errorf("uapi %s: %w", iface, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "set=1\n%s\n", conf); err != nil {
		return fmt.Errorf("uapi %s: %w", iface, err)
	}
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			break
		}
		if v, ok := strings.CutPrefix(line, "errno="); ok && v != "0" {
			return fmt.Errorf("uapi %s: errno=%s", iface, v)
		}
	}
	return sc.Err()
}

var wgSeq atomic.Uint32

// wgDev is one wireguard-go process and its interface.
type wgDev struct {
	iface string
	proc  *topo.Proc
	key   wgKey
}

// startWG starts wireguard-go in h's namespace on a TUN named iface and
// gives the interface addr, mtu and routes.
func startWG(h *topo.Host, bin, iface string, addr netip.Prefix, mtu int, routes []netip.Prefix) (*wgDev, error) {
	key, err := newWGKey()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-f", iface)
	cmd.Env = append(os.Environ(), "LOG_LEVEL=error")
	// Its output is only a banner and errors; keep it for the error message
	// if the process dies at start.
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	p, err := h.Start(cmd)
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(uapiDir, iface+".sock")
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-p.Done():
			return nil, fmt.Errorf("wireguard-go %s in %s exited at start: %s", iface, h.Name, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if i > 200 {
			return nil, fmt.Errorf("wireguard-go %s in %s: no UAPI socket after 10 s", iface, h.Name)
		}
	}
	l, err := h.NS.Netlink().LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", iface, err)
	}
	err = errors.Join(h.NS.Netlink().LinkSetMTU(l, mtu), h.NS.AddAddr(iface, addr), h.NS.LinkUp(iface))
	for _, r := range routes {
		err = errors.Join(err, h.NS.AddRoute(r, netip.Addr{}, iface))
	}
	if err != nil {
		return nil, err
	}
	return &wgDev{iface: iface, proc: p, key: key}, nil
}

// wgPair is the raw wireguard-go path.
type wgPair struct {
	client, gateway *wgDev
	clientPeer      string // the client's UAPI peer section for the gateway
	gatewayPub      string
}

// setupRawWG brings up wireguard-go between tp.Client and tp.Gateway,
// which must be reachable directly (GatewayNAT: NATNone).
func setupRawWG(tp *topo.Topology, bin string, mtu int) (*wgPair, error) {
	n := wgSeq.Add(1)
	ifC := fmt.Sprintf("gzbc%d_%d", os.Getpid()%100000, n)
	ifG := fmt.Sprintf("gzbg%d_%d", os.Getpid()%100000, n)
	gw, err := startWG(tp.Gateway, bin, ifG, wgGatewayIP, mtu, []netip.Prefix{wgClientIP})
	if err != nil {
		return nil, err
	}
	cl, err := startWG(tp.Client, bin, ifC, wgClientIP, mtu, []netip.Prefix{wgGatewayIP, topo.ResourceV4})
	if err != nil {
		return nil, err
	}
	err = uapiSet(ifG, fmt.Sprintf("private_key=%s\nlisten_port=%d\nreplace_peers=true\npublic_key=%s\nallowed_ip=%s\n",
		gw.key.priv, wgGatewayPort, cl.key.pub, wgClientIP))
	if err != nil {
		return nil, err
	}
	peer := fmt.Sprintf("public_key=%s\nendpoint=%s\nallowed_ip=%s\nallowed_ip=%s\n",
		gw.key.pub, netip.AddrPortFrom(tp.Gateway.IPv4, wgGatewayPort), wgGatewayIP, topo.ResourceV4)
	err = uapiSet(ifC, fmt.Sprintf("private_key=%s\nlisten_port=%d\nreplace_peers=true\n%s", cl.key.priv, wgClientPort, peer))
	if err != nil {
		return nil, err
	}
	return &wgPair{client: cl, gateway: gw, clientPeer: peer, gatewayPub: gw.key.pub}, nil
}

// setupTimes measures connection set-up n times: the client forgets the
// gateway peer (and with it the session), re-adds it, and times one UDP
// datagram to the resource's echo until its reply, i.e. a WireGuard
// handshake plus one round trip, as a first packet through a new
// connection sees it.
func (w *wgPair) setupTimes(ctx context.Context, client *topo.Host, echo netip.AddrPort, n int) (probeStats, error) {
	c, err := client.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
	if err != nil {
		return probeStats{}, err
	}
	defer c.Close()
	buf := make([]byte, 128)
	var fatal error // a UAPI or socket failure: later probes cannot work either
	st := runProbes(ctx, n, func(i int) (time.Duration, error) {
		// wireguard-go whitens handshake timestamps to ~16 ms, and a
		// responder ignores an initiation whose timestamp is not newer than
		// the last one: space the probes out.
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if err := uapiSet(w.client.iface, "public_key="+w.gatewayPub+"\nremove=true\n"); err != nil {
			fatal = err
			return 0, fmt.Errorf("%w: %v", errNoMoreProbes, err)
		}
		if err := uapiSet(w.client.iface, w.clientPeer); err != nil {
			fatal = err
			return 0, fmt.Errorf("%w: %v", errNoMoreProbes, err)
		}
		// Drain a late reply of an earlier failed probe.
		_ = c.SetReadDeadline(time.Now())
		for j := 0; j < 100; j++ {
			if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
				break
			}
		}
		start := time.Now()
		if _, err := c.WriteToUDPAddrPort([]byte("setup"), echo); err != nil {
			fatal = err
			return 0, fmt.Errorf("%w: %v", errNoMoreProbes, err)
		}
		_ = c.SetReadDeadline(start.Add(5 * time.Second))
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}, nil)
	return st, fatal
}
