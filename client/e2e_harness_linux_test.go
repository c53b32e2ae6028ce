package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gozone/gozone/internal/topo"
)

// The end-to-end tests run the real client, gateway and development portal
// binaries in the namespaces of internal/topo.

// e2eBinaries builds the client and portal binaries once per test process.
var e2eBinaries struct {
	once                    sync.Once
	client, gateway, portal string
	err                     error
}

func buildBinaries(t *testing.T) (client, gateway, portal string) {
	t.Helper()
	e2eBinaries.once.Do(func() {
		dir, err := os.MkdirTemp("", "gozone-e2e-bin")
		if err != nil {
			e2eBinaries.err = err
			return
		}
		e2eBinaries.client = filepath.Join(dir, "gozone-client")
		e2eBinaries.gateway = filepath.Join(dir, "gozone-gateway")
		e2eBinaries.portal = filepath.Join(dir, "portal")
		for _, b := range [][2]string{{e2eBinaries.client, "."}, {e2eBinaries.gateway, "../gateway"}, {e2eBinaries.portal, "../examples/portal/cmd/portal"}} {
			out, err := exec.Command("go", "build", "-o", b[0], b[1]).CombinedOutput()
			if err != nil {
				e2eBinaries.err = fmt.Errorf("go build %s: %v\n%s", b[1], err, out)
				return
			}
		}
	})
	if e2eBinaries.err != nil {
		t.Fatal(e2eBinaries.err)
	}
	return e2eBinaries.client, e2eBinaries.gateway, e2eBinaries.portal
}

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
	portalLog *syncBuffer
	gwLog     *syncBuffer
}

// syncBuffer is a goroutine-safe log sink for a child process.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startE2E(t *testing.T, opts topo.Options) *e2eEnv {
	t.Helper()
	clientBin, gatewayBin, portalBin := buildBinaries(t)
	tp := topo.Build(t, opts)
	env := &e2eEnv{tp: tp, clientBin: clientBin, portalLog: &syncBuffer{}, gwLog: &syncBuffer{}}
	portalAddr := netip.AddrPortFrom(tp.Portal.IPv4, e2ePortalPort)
	env.apiURL = "ws://" + portalAddr.String()
	resourceCIDR := topo.ResourceV4.String()
	cfg := `
account: {slug: e2e}
sites:
  - {name: hq, gateway_tokens: ["` + e2eGatewayToken + `"]}
  - {name: empty, gateway_tokens: ["gw-token-nobody-0123456"]}
actors:
  - {name: alice, groups: [eng], tokens: ["` + e2eClientToken + `"]}
resources:
  - {name: resnet, type: cidr, address: ` + resourceCIDR + `, sites: [hq]}
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
`
	cfgPath := filepath.Join(t.TempDir(), "portal.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	pcmd := exec.Command(portalBin, "--config", cfgPath, "--listen", portalAddr.String(),
		"--relay-listen", netip.AddrPortFrom(tp.Portal.IPv4, 3478).String())
	pcmd.Stdout, pcmd.Stderr = env.portalLog, env.portalLog
	if _, err := tp.Portal.Start(pcmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("portal log:\n%s", tail(env.portalLog.String(), 60))
			t.Logf("gateway log:\n%s", tail(env.gwLog.String(), 80))
		}
	})
	waitTCP(t, tp.Client, portalAddr)

	// The resource: an HTTP server on the resource host.
	startHTTP(t, tp.Resource, netip.AddrPortFrom(tp.Resource.IPv4, 80))

	// The gateway binary runs with its own /etc (a private mount
	// namespace), whose hosts file resolves the DNS resource's names.
	gwEtc := t.TempDir()
	hosts := tp.Resource.IPv4.String() + " web.svc.corp\n"
	if err := os.WriteFile(filepath.Join(gwEtc, "hosts"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(gwEtc, "resolv.conf"), []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gcmd := withEtc(gwEtc, gatewayBin, "--tun-name", "tun-gw", "--masquerade", "--no-inc-buf", "--health-check-addr", "", "--tun-threads", "1")
	gcmd.Env = append(os.Environ(), "FIREZONE_API_URL="+env.apiURL, "FIREZONE_TOKEN="+e2eGatewayToken, "FIREZONE_ID=e2e-gateway")
	gcmd.Stdout, gcmd.Stderr = env.gwLog, env.gwLog
	if _, err := tp.Gateway.Start(gcmd); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(e2eWait)
	for !strings.Contains(env.portalLog.String(), "gateway joined") {
		if time.Now().After(deadline) {
			t.Fatal("gateway did not join the portal")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return env
}

const e2eWait = 60 * time.Second

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func waitTCP(t *testing.T, h *topo.Host, ap netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	for {
		c, err := h.DialTCP(ap, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v not reachable from %s: %v", ap, h.Name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startHTTP serves "/" (a greeting) and "/stream?n=<bytes>" (n bytes,
// written in 64 KiB chunks) on ap inside h.
func startHTTP(t *testing.T, h *topo.Host, ap netip.AddrPort) {
	t.Helper()
	ln, err := h.ListenTCP(ap)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveHTTP(c)
		}
	}()
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
		return "", fmt.Errorf("bad response %q", tail(string(b), 3))
	}
	return parts[1], nil
}

// withEtc runs bin in a private mount namespace where etcDir is mounted
// over /etc, so the process has its own resolv.conf and hosts and nothing
// it writes under /etc reaches the host.
func withEtc(etcDir, bin string, args ...string) *exec.Cmd {
	script := `mount --bind "$1" /etc && shift && exec "$@"`
	full := append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", etcDir, bin}, args...)
	return exec.Command("unshare", full...)
}
