package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gozone/gozone/connlib"
	devportal "github.com/gozone/gozone/examples/portal"
)

// TestEmbedFetchesThroughTunnel runs the example's run against an
// in-process portal and userspace gateway: the HTTP server on loopback is
// reached by its DNS-resource name through the embedded client.
func TestEmbedFetchesThroughTunnel(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "embedded hello for %s\n", r.Host)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	port := netip.MustParseAddrPort(ln.Addr().String()).Port()

	cfg, err := devportal.ParseConfig([]byte(`
account: {slug: embed}
sites: [{name: local, gateway_tokens: ["embed-gateway-token-0123"]}]
actors: [{name: dev, email: dev@example.com, groups: [devs], tokens: ["embed-client-token-0123"]}]
resources: [{name: web, type: dns, address: web.embed.internal, sites: [local]}]
policies: [{group: devs, resource: web}]
relays: {builtin: {enabled: true}}
`))
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
	webIP := netip.MustParseAddr("10.98.0.1")
	ut, err := connlib.NewUserspaceGatewayTun(connlib.UserspaceGatewayConfig{Redirect: func(a netip.Addr) netip.Addr {
		if a == webIP {
			return netip.MustParseAddr("127.0.0.1")
		}
		return a
	}})
	if err != nil {
		t.Fatal(err)
	}
	gcfg := connlib.GatewayConfig{
		APIURL: p.URL(), Token: "embed-gateway-token-0123", FirezoneID: "embed-gw",
		Snownet:  connlib.GatewaySnownet{HostIP: netip.MustParseAddr("127.0.0.1")},
		Resolver: &connlib.HostsResolver{Hosts: map[string][]netip.Addr{"web.embed.internal": {webIP}}, NoFallback: true},
	}
	ut.Configure(&gcfg)
	g, err := connlib.NewGateway(gcfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	env := map[string]string{"FIREZONE_API_URL": p.URL(), "FIREZONE_TOKEN": "embed-client-token-0123", "FIREZONE_ID": "embed-test"}
	var out bytes.Buffer
	if err := run([]string{fmt.Sprintf("http://web.embed.internal:%d/", port)}, func(k string) string { return env[k] }, &out); err != nil {
		t.Fatalf("run: %v (output %q)", err, out.String())
	}
	if got := out.String(); !strings.HasPrefix(got, "200 OK\n") || !strings.Contains(got, "embedded hello for web.embed.internal") {
		t.Fatalf("output %q", got)
	}
	if err := run(nil, func(string) string { return "" }, &out); err == nil {
		t.Fatal("no URL accepted")
	}
}
