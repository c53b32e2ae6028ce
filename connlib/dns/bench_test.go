package dns

import (
	"encoding/binary"
	"fmt"
	"testing"

	mdns "github.com/miekg/dns"
)

func benchResolver(b *testing.B, extra int) *Resolver {
	rs := []Resource{{ID: "r", Address: "*.example.com"}}
	for i := range extra {
		rs = append(rs, Resource{ID: fmt.Sprintf("x%d", i), Address: fmt.Sprintf("*.svc-%d.corp.internal", i)})
	}
	r, err := NewResolver(Config{})
	if err != nil {
		b.Fatal(err)
	}
	if err := r.SetResources(rs); err != nil {
		b.Fatal(err)
	}
	return r
}

func benchQuery(b *testing.B, r *Resolver, tr Transport, q []byte, want Action) {
	out := make([]byte, MaxResponseSize)
	if res, err := r.HandleQuery(tr, q, out); err != nil || res.Action != want {
		b.Fatalf("%v %v", res.Action, err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(q)))
	for b.Loop() {
		_, _ = r.HandleQuery(tr, q, out)
	}
}

// BenchmarkLocalAnswer: an A query for a resource name that already has
// proxy IPs, the common case after the first lookup.
func BenchmarkLocalAnswer(b *testing.B) {
	for _, n := range []int{0, 100, 1000} {
		b.Run(fmt.Sprintf("A/resources=%d", n+1), func(b *testing.B) {
			benchQuery(b, benchResolver(b, n), TransportUDP, mkQuery(b, "app.example.com", mdns.TypeA, 1), ActionRespond)
		})
	}
	b.Run("AAAA+EDNS", func(b *testing.B) {
		m := new(mdns.Msg)
		m.SetQuestion("app.example.com.", mdns.TypeAAAA)
		m.SetEdns0(1232, false)
		q, _ := m.Pack()
		benchQuery(b, benchResolver(b, 0), TransportUDP, q, ActionRespond)
	})
	b.Run("A/tcp", func(b *testing.B) {
		q, _ := AppendTCPFrame(nil, mkQuery(b, "app.example.com", mdns.TypeA, 1))
		benchQuery(b, benchResolver(b, 0), TransportTCP, q, ActionRespond)
	})
}

func BenchmarkForwardDecision(b *testing.B) {
	b.Run("upstream/resources=1001", func(b *testing.B) {
		benchQuery(b, benchResolver(b, 1000), TransportUDP, mkQuery(b, "www.example.org", mdns.TypeA, 1), ActionForwardUpstream)
	})
	b.Run("site", func(b *testing.B) {
		benchQuery(b, benchResolver(b, 0), TransportUDP, mkQuery(b, "app.example.com", mdns.TypeSRV, 1), ActionForwardSite)
	})
}

func BenchmarkLookupProxyIP(b *testing.B) {
	r := benchResolver(b, 0)
	_, _ = r.HandleQuery(TransportUDP, mkQuery(b, "app.example.com", mdns.TypeA, 1), make([]byte, MaxResponseSize))
	p, _ := r.ProxyIPsOf("app.example.com")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := r.LookupProxyIP(p.V4[2]); !ok {
			b.Fatal("not found")
		}
	}
}

func BenchmarkPendingTrackMatch(b *testing.B) {
	p := NewPending[int](PendingConfig{Clock: newFakeClock()})
	q := mkQuery(b, "a.example.org", mdns.TypeA, 5)
	m := new(mdns.Msg)
	_ = m.Unpack(q)
	m.Response = true
	resp, _ := m.Pack()
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Track(q, upstream1, 1); err != nil {
			b.Fatal(err)
		}
		binary.BigEndian.PutUint16(resp, binary.BigEndian.Uint16(q))
		if _, err := p.Match(resp, upstream1); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPatternMatch(b *testing.B) {
	p := MustParsePattern("app.**.web.*.example.com")
	b.ReportAllocs()
	for b.Loop() {
		p.Match("app.a.b.c.web.x.example.com")
	}
}
