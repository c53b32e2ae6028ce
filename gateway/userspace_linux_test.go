package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gozone/gozone/connlib"
	devportal "github.com/gozone/gozone/examples/portal"
	"github.com/gozone/gozone/internal/testproc"
)

// serveHTTP starts an HTTP server on 127.0.0.1 answering with tag.
func serveHTTP(t *testing.T, tag string) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s via %s\n", tag, r.Host)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return netip.MustParseAddrPort(ln.Addr().String()).Port()
}

// TestUserspaceGatewayBinary runs the real gateway binary with --userspace
// (as nobody when the test runs as root: it must need no privilege) against
// an in-process development portal, and fetches a loopback HTTP service
// published as 10.99.0.10 through an embedded userspace client. A second
// service on a port outside the resource's filter must stay unreachable.
// Everything is on loopback.
func TestUserspaceGatewayBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gateway binary (-short)")
	}
	allowed := serveHTTP(t, "allowed")
	blocked := serveHTTP(t, "blocked")

	cfg, err := devportal.ParseConfig([]byte(fmt.Sprintf(`
account: {slug: userspace}
sites: [{name: local, gateway_tokens: ["userspace-gateway-token-0123"]}]
actors: [{name: dev, email: dev@example.com, groups: [devs], tokens: ["userspace-client-token-0123"]}]
resources:
  - {name: web, type: cidr, address: 10.99.0.0/24, sites: [local], filters: [{protocol: tcp, ports: "%d"}]}
policies: [{group: devs, resource: web}]
relays: {builtin: {enabled: true}}
`, allowed)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := devportal.New(devportal.Options{Config: cfg, RelayListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if _, err := p.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}

	// testproc builds into a world-readable directory, so an unprivileged
	// user can run the binary.
	bin := testproc.Build(t, testproc.GatewayPkg)
	dir := filepath.Dir(bin)
	args := []string{bin, "--userspace", "--userspace-map", "10.99.0.10=127.0.0.1", "--host-ip", "127.0.0.1", "--health-check-addr", ""}
	if os.Geteuid() == 0 {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("running as root in CI but setpriv (util-linux) is missing: cannot run the gateway unprivileged")
			}
			t.Log("setpriv not found: running the userspace gateway as root")
		} else {
			args = append([]string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"}, args...)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=/usr/bin:/bin", "HOME=" + dir,
		"FIREZONE_API_URL=" + p.URL(), "FIREZONE_TOKEN=userspace-gateway-token-0123",
		"FIREZONE_ID=userspace-gw-1", "FIREZONE_NAME=userspace-gw",
	}
	gw := testproc.Start(t, nil, "gateway", cmd)

	uc, err := connlib.NewUserspaceClient(connlib.ClientConfig{
		APIURL: p.URL(), Token: "userspace-client-token-0123", FirezoneID: "userspace-client-1",
		HostIP: netip.MustParseAddr("127.0.0.1"),
	})
	if err != nil {
		t.Fatal(err)
	}
	uc.Start()
	defer uc.Close()
	hc := &http.Client{Transport: uc.Transport(), Timeout: 30 * time.Second}

	// The gateway may still be joining: retry the first fetch for a while.
	var body string
	err = testproc.Poll(60*time.Second, 500*time.Millisecond, func() error {
		if exited, err := gw.Exited(); exited {
			return testproc.Abort(fmt.Errorf("gateway exited early: %v", err))
		}
		resp, err := hc.Get(fmt.Sprintf("http://10.99.0.10:%d/", allowed))
		if err != nil {
			return fmt.Errorf("fetch through the userspace gateway: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(body, "allowed via 10.99.0.10") {
		t.Fatalf("unexpected body %q", body)
	}

	// A port outside the filter: the gateway refuses, the service sees nothing.
	short := &http.Client{Transport: uc.Transport(), Timeout: 5 * time.Second}
	if resp, err := short.Get(fmt.Sprintf("http://10.99.0.10:%d/", blocked)); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("port outside the filter was reachable: %q", b)
	}

	if os.Geteuid() == 0 && strings.Contains(args[0], "setpriv") {
		if !strings.Contains(gw.Log.String(), "userspace mode") {
			t.Fatalf("gateway did not log userspace mode")
		}
	}
	// SIGINT: clean exit 0.
	gw.Signal(t, os.Interrupt)
	if code := gw.ExitCode(t, 30*time.Second); code != 0 {
		t.Fatalf("gateway exit code %d after SIGINT", code)
	}
}

func TestUserspaceOptions(t *testing.T) {
	o, err := parseOptions([]string{"--userspace", "--userspace-map", "10.99.0.10=127.0.0.1", "--host-ip", "127.0.0.1", "tok"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !o.userspace || o.redirects.lookup(netip.MustParseAddr("10.99.0.10")) != netip.MustParseAddr("127.0.0.1") ||
		o.redirects.lookup(netip.MustParseAddr("10.99.0.11")) != netip.MustParseAddr("10.99.0.11") || o.hostIP != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("%+v", o)
	}
	for _, args := range [][]string{
		{"--userspace-map", "10.99.0.10=127.0.0.1", "tok"},          // needs --userspace
		{"--userspace", "--userspace-map", "10.99.0.10", "tok"},     // no TO
		{"--userspace", "--userspace-map", "10.99.0.10=::1", "tok"}, // families differ
		{"--userspace", "--masquerade", "tok"},                      // exclusive
		{"--host-ip", "not-an-ip", "tok"},
	} {
		if _, err := parseOptions(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
