package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gozone/gozone/connlib"
	"github.com/gozone/gozone/internal/linuxnet"
	"github.com/gozone/gozone/internal/topo"
	"github.com/gozone/gozone/tun"
)

// The end-to-end tests run the real client binary and the development
// portal binary in the namespaces of internal/topo. The gateway is the
// connlib gateway session run by this test binary re-executed inside the
// gateway's namespace (TestMain, role "gateway"), with a Linux TUN,
// addresses, routes and nftables masquerade, until a gateway binary is
// available to run instead.

const e2eRoleEnv = "GOZONE_E2E_ROLE"

func TestMain(m *testing.M) {
	if os.Getenv(e2eRoleEnv) == "gateway" {
		os.Exit(e2eGatewayMain())
	}
	os.Exit(m.Run())
}

// e2eResolver resolves *.svc.corp to the address in E2E_RESOLVE (the
// gateway's DNS for DNS resources; the test topology has no DNS server).
type e2eResolver struct{ addr netip.Addr }

func (r e2eResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	if network == "ip4" && strings.HasSuffix(strings.TrimSuffix(host, "."), ".svc.corp") {
		return []netip.Addr{r.addr}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// e2eGatewayOS applies the gateway session's interface settings.
type e2eGatewayOS struct{ dev *tun.LinuxTun }

func (o e2eGatewayOS) SetInterface(_ context.Context, s connlib.GatewayInterface) error {
	if err := linuxnet.SetAddrs(o.dev.Name(), []netip.Prefix{netip.PrefixFrom(s.IPv4, 32), netip.PrefixFrom(s.IPv6, 128)}); err != nil {
		return err
	}
	for _, r := range s.Routes {
		if err := o.dev.AddRoute(r); err != nil {
			return err
		}
	}
	return nil
}

func e2eGatewayMain() int {
	log, _ := zap.NewDevelopment()
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "e2e gateway:", err)
		return 1
	}
	dev, err := tun.CreateLinux(tun.LinuxConfig{Name: "tun-gw", Queues: 1}, log.Named("tun"))
	if err != nil {
		return fail(err)
	}
	masq, err := linuxnet.InstallMasquerade("tun-gw")
	if err != nil {
		return fail(err)
	}
	defer masq.Remove()
	g, err := connlib.NewGateway(connlib.GatewayConfig{
		Tun: dev, APIURL: os.Getenv("FIREZONE_API_URL"), Token: os.Getenv("FIREZONE_TOKEN"),
		FirezoneID: "e2e-gateway", Name: "e2e-gateway", Logger: log, Interface: e2eGatewayOS{dev},
		Resolver: e2eResolver{netip.MustParseAddr(os.Getenv("E2E_RESOLVE"))},
	})
	if err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := g.Run(ctx); err != nil {
		return fail(err)
	}
	return 0
}

// e2eBinaries builds the client and portal binaries once per test process.
var e2eBinaries struct {
	once           sync.Once
	client, portal string
	err            error
}

func buildBinaries(t *testing.T) (client, portal string) {
	t.Helper()
	e2eBinaries.once.Do(func() {
		dir, err := os.MkdirTemp("", "gozone-e2e-bin")
		if err != nil {
			e2eBinaries.err = err
			return
		}
		e2eBinaries.client = filepath.Join(dir, "gozone-client")
		e2eBinaries.portal = filepath.Join(dir, "portal")
		for _, b := range [][2]string{{e2eBinaries.client, "."}, {e2eBinaries.portal, "../examples/portal/cmd/portal"}} {
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
	return e2eBinaries.client, e2eBinaries.portal
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

func startE2E(t *testing.T) *e2eEnv {
	t.Helper()
	clientBin, portalBin := buildBinaries(t)
	tp := topo.Build(t, topo.Options{})
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
policies:
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

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	gcmd := exec.Command(exe, "-test.run=^$")
	gcmd.Env = append(os.Environ(), e2eRoleEnv+"=gateway", "FIREZONE_API_URL="+env.apiURL,
		"FIREZONE_TOKEN="+e2eGatewayToken, "E2E_RESOLVE="+tp.Resource.IPv4.String())
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
