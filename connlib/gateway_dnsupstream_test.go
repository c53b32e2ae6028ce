package connlib

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"go.uber.org/zap"
)

// Unmeasured servers are tried in resolv.conf order; a failing one drops
// behind, the faster of two working ones leads; the list is re-read after
// 60 s and measurements of servers still listed survive it.
func TestGwUpstreamsOrderAndReload(t *testing.T) {
	now := time.Unix(1000, 0)
	list := []string{"a:53", "b:53", "c:53"}
	loads := 0
	u := newGwUpstreams(func() []string { loads++; return slices.Clone(list) }, func() time.Time { return now })
	if got := u.order(); !slices.Equal(got, []string{"a:53", "b:53", "c:53"}) {
		t.Fatalf("initial order %v", got)
	}
	u.report("a:53", 0, false)
	u.report("b:53", 300*time.Millisecond, true)
	u.report("c:53", 5*time.Millisecond, true)
	if got := u.order(); !slices.Equal(got, []string{"c:53", "b:53", "a:53"}) {
		t.Fatalf("order after measurements %v, want c (fastest), b, a (failed)", got)
	}
	// c gets slow: smoothing moves it behind b only after several samples.
	u.report("c:53", time.Second, true)
	if got := u.order()[0]; got != "c:53" {
		t.Fatalf("one slow sample already demoted c: %v", u.order())
	}
	for i := 0; i < 10; i++ {
		u.report("c:53", time.Second, true)
	}
	if got := u.order()[0]; got != "b:53" {
		t.Fatalf("c still first after many slow samples: %v", u.order())
	}
	if loads != 1 {
		t.Fatalf("list read %d times within 60 s, want 1", loads)
	}
	// resolv.conf changes: a is gone, d is new (unmeasured: tried first).
	list = []string{"b:53", "c:53", "d:53"}
	now = now.Add(59 * time.Second)
	if slices.Contains(u.order(), "d:53") {
		t.Fatal("list re-read before 60 s")
	}
	now = now.Add(time.Second)
	if got := u.order(); !slices.Equal(got, []string{"d:53", "b:53", "c:53"}) {
		t.Fatalf("order after reload %v, want d (unmeasured), b, c (measured before)", got)
	}
	u.report("a:53", time.Millisecond, true) // no longer listed: ignored
	if _, ok := u.srtt["a:53"]; ok {
		t.Fatal("a measured after it left the list")
	}
}

// A dead first nameserver costs one attempt: the query is answered by the
// next, which then leads the order.
func TestGatewayDNSServerFallsBack(t *testing.T) {
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	dead.Close() // queries to it are refused (or time out)

	live, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var answered atomic.Int32
	srv := &mdns.Server{PacketConn: live, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		answered.Add(1)
		m := new(mdns.Msg)
		m.SetReply(r)
		rr, _ := mdns.NewRR(r.Question[0].Name + " 60 IN TXT \"live\"")
		m.Answer = append(m.Answer, rr)
		_ = w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { _ = srv.Shutdown() })

	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	u := newGwUpstreams(func() []string { return []string{deadAddr, live.LocalAddr().String()} }, nil)
	go gwServeDNS(ctx, conn, u, zap.NewNop())

	for i := 0; i < 2; i++ {
		m := new(mdns.Msg)
		m.SetQuestion("db.svc.test.", mdns.TypeTXT)
		r, _, err := (&mdns.Client{Timeout: 10 * time.Second}).Exchange(m, conn.LocalAddr().String())
		if err != nil || r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("query %d: %v %v", i, r, err)
		}
	}
	if n := answered.Load(); n != 2 {
		t.Fatalf("live server answered %d queries, want 2", n)
	}
	if got := u.order()[0]; got != live.LocalAddr().String() {
		t.Fatalf("order %v: the working server should lead", u.order())
	}
}

// resolv.conf parsing: every nameserver, port 53.
func TestResolvConfServers(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(p, []byte("# test\nnameserver 192.0.2.1\nnameserver 2001:db8::1\nsearch example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := resolvConfServers(p)()
	if want := []string{"192.0.2.1:53", "[2001:db8::1]:53"}; !slices.Equal(got, want) {
		t.Fatalf("servers %v, want %v", got, want)
	}
	if got := resolvConfServers(filepath.Join(t.TempDir(), "missing"))(); len(got) != 0 {
		t.Fatalf("missing file gave %v", got)
	}
}
