package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gozone/gozone/internal/testproc"
	"github.com/gozone/gozone/internal/topo"
)

// The end-to-end tests run the real client, gateway and development portal
// binaries in the namespaces of internal/topo.

const (
	e2eGatewayToken = "gw-token-e2e-0123456789"
	e2eClientToken  = "client-token-e2e-012345"
	e2ePortalPort   = 8080
)

// e2eEnv is a running topology with portal, gateway and an HTTP server on
// the resource host.
type e2eEnv struct {
	tp        *topo.Topology
	clientBin string
	apiURL    string
	portal    *testproc.Proc
	gateway   *testproc.Proc
}

func startE2E(t *testing.T, opts topo.Options) *e2eEnv {
	t.Helper()
	clientBin, gatewayBin := testproc.Build(t, "."), testproc.Build(t, testproc.GatewayPkg)
	tp := topo.Build(t, opts)
	env := &e2eEnv{tp: tp, clientBin: clientBin}
	portal := testproc.Portal{
		Config: `
account: {slug: e2e}
sites:
  - {name: hq, gateway_tokens: ["` + e2eGatewayToken + `"]}
  - {name: empty, gateway_tokens: ["gw-token-nobody-0123456"]}
actors:
  - {name: alice, groups: [eng], tokens: ["` + e2eClientToken + `"]}
resources:
  - {name: resnet, type: cidr, address: ` + topo.ResourceV4.String() + `, sites: [hq]}
  - {name: svc, type: dns, address: "*.svc.corp", sites: [hq], ip_stack: ipv4_only}
  - {name: nowhere, type: cidr, address: 10.21.0.0/24, sites: [empty]}
  - {name: internet, type: internet, sites: [hq]}
policies:
  - {group: eng, resource: internet}
  - {group: eng, resource: resnet}
  - {group: eng, resource: svc}
  - {group: eng, resource: nowhere}
relays:
  builtin: {enabled: true, public_ip: ` + tp.Portal.IPv4.String() + `}
`,
		Listen:      netip.AddrPortFrom(tp.Portal.IPv4, e2ePortalPort),
		RelayListen: netip.AddrPortFrom(tp.Portal.IPv4, 3478),
		In:          tp.Portal.NS,
		From:        tp.Client,
	}
	env.portal = testproc.StartPortal(t, portal)
	env.apiURL = portal.URL()

	// The resource: an HTTP server on the resource host.
	startHTTP(t, tp.Resource, netip.AddrPortFrom(tp.Resource.IPv4, 80))

	// The gateway binary runs with its own /etc (a private mount
	// namespace), whose hosts file resolves the DNS resource's names.
	gwEtc := testproc.EtcDir(t, map[string]string{
		"hosts":       tp.Resource.IPv4.String() + " web.svc.corp\n",
		"resolv.conf": "nameserver 127.0.0.1\n",
	})
	gcmd := testproc.WithEtc(gwEtc, gatewayBin, "--tun-name", "tun-gw", "--masquerade", "--no-inc-buf", "--health-check-addr", "", "--tun-threads", "1")
	gcmd.Env = append(os.Environ(), "FIREZONE_API_URL="+env.apiURL, "FIREZONE_TOKEN="+e2eGatewayToken, "FIREZONE_ID=e2e-gateway")
	env.gateway = testproc.Start(t, tp.Gateway.NS, "gateway", gcmd)
	env.portal.WaitLog(t, "gateway joined")
	return env
}

// startHTTP serves "/" (a greeting) and "/stream?n=<bytes>" (n bytes,
// written in 64 KiB chunks) on ap inside h.
func startHTTP(t *testing.T, h *topo.Host, ap netip.AddrPort) {
	t.Helper()
	testproc.ServeTCP(t, h, ap, serveHTTP)
}

// serveHTTP is a tiny HTTP/1.0 responder (no net/http server: its
// goroutines would be fine, but this keeps the resource side obvious).
func serveHTTP(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return
	}
	line := strings.SplitN(string(buf[:n]), "\r\n", 2)[0]
	fields := strings.Fields(line)
	if len(fields) < 2 {
		return
	}
	path := fields[1]
	if strings.HasPrefix(path, "/stream?n=") {
		var total int
		fmt.Sscanf(strings.TrimPrefix(path, "/stream?n="), "%d", &total)
		fmt.Fprintf(c, "HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n", total)
		chunk := bytes.Repeat([]byte("z"), 64<<10)
		for total > 0 {
			k := min(total, len(chunk))
			if _, err := c.Write(chunk[:k]); err != nil {
				return
			}
			total -= k
			time.Sleep(20 * time.Millisecond) // a transfer that lasts a while
		}
		return
	}
	body := "hello from the resource\n"
	fmt.Fprintf(c, "HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// httpGet does a minimal HTTP/1.0 GET from inside h and returns the body.
func httpGet(h *topo.Host, ap netip.AddrPort, path string, timeout time.Duration) (string, error) {
	c, err := h.DialTCP(ap, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, ap)
	b, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	parts := strings.SplitN(string(b), "\r\n\r\n", 2)
	if len(parts) != 2 || !strings.HasPrefix(parts[0], "HTTP/1.0 200") {
		return "", fmt.Errorf("bad response %q", testproc.Tail(string(b), 3))
	}
	return parts[1], nil
}
