package dns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	mdns "github.com/miekg/dns"
)

func mkQuery(t testing.TB, name string, qtype uint16, id uint16) []byte {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	m.Id = id
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func unpack(t testing.TB, b []byte) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("response does not unpack: %v", err)
	}
	return m
}

func newTestResolver(t testing.TB, rs ...Resource) *Resolver {
	t.Helper()
	r, err := NewResolver(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetResources(rs); err != nil {
		t.Fatal(err)
	}
	return r
}

// ask runs a UDP query and returns the decoded reply (nil if not answered).
func ask(t testing.TB, r *Resolver, name string, qtype uint16) (Result, *mdns.Msg) {
	t.Helper()
	out := make([]byte, MaxResponseSize)
	q := mkQuery(t, name, qtype, 0x1234)
	res, err := r.HandleQuery(TransportUDP, q, out)
	if err != nil {
		t.Fatalf("HandleQuery(%s %s): %v", name, mdns.TypeToString[qtype], err)
	}
	if res.Action != ActionRespond {
		return res, nil
	}
	m := unpack(t, res.Response)
	checkEcho(t, m, name, qtype)
	return res, m
}

func checkEcho(t testing.TB, m *mdns.Msg, name string, qtype uint16) {
	t.Helper()
	if m.Id != 0x1234 || !m.Response || !m.RecursionDesired || !m.RecursionAvailable || m.Opcode != mdns.OpcodeQuery {
		t.Errorf("header: %+v", m.MsgHdr)
	}
	if len(m.Question) != 1 || m.Question[0].Name != mdns.Fqdn(name) || m.Question[0].Qtype != qtype || m.Question[0].Qclass != mdns.ClassINET {
		t.Errorf("question not echoed: %+v", m.Question)
	}
}

func answerIPs(t testing.TB, m *mdns.Msg, owner string) []netip.Addr {
	t.Helper()
	var ips []netip.Addr
	for _, rr := range m.Answer {
		h := rr.Header()
		if h.Name != mdns.Fqdn(owner) || h.Ttl != TTL || h.Class != mdns.ClassINET {
			t.Errorf("answer header %+v", h)
		}
		switch v := rr.(type) {
		case *mdns.A:
			a, _ := netip.AddrFromSlice(v.A.To4())
			ips = append(ips, a)
		case *mdns.AAAA:
			a, _ := netip.AddrFromSlice(v.AAAA)
			ips = append(ips, a)
		default:
			t.Errorf("unexpected record %v", rr)
		}
	}
	return ips
}

func TestLocalAnswerA(t *testing.T) {
	r := newTestResolver(t, Resource{ID: "r1", Address: "*.example.com"})
	res, m := ask(t, r, "app.example.com", mdns.TypeA)
	if res.Action != ActionRespond || m.Rcode != mdns.RcodeSuccess || res.QType != mdns.TypeA {
		t.Fatalf("action %v rcode %d", res.Action, m.Rcode)
	}
	ips := answerIPs(t, m, "app.example.com")
	if len(ips) != 4 {
		t.Fatalf("got %d A records, want 4", len(ips))
	}
	for _, ip := range ips {
		if !ip.Is4() || !ProxyRangeV4.Contains(ip) || SentinelRangeV4.Contains(ip) {
			t.Errorf("%v is not a v4 proxy IP", ip)
		}
	}
	_, m6 := ask(t, r, "app.example.com", mdns.TypeAAAA)
	ips6 := answerIPs(t, m6, "app.example.com")
	if len(ips6) != 4 {
		t.Fatalf("got %d AAAA records, want 4", len(ips6))
	}
	for _, ip := range ips6 {
		if !ip.Is6() || !ProxyRangeV6.Contains(ip) {
			t.Errorf("%v is not a v6 proxy IP", ip)
		}
	}
	p, ok := r.ProxyIPsOf("APP.example.com.")
	if !ok || p.V4[0] != ips[0] || p.V6[3] != ips6[3] {
		t.Errorf("ProxyIPsOf = %v %v", p, ok)
	}
	if m.Authoritative || m.Truncated || len(m.Ns) != 0 || len(m.Extra) != 0 {
		t.Errorf("unexpected flags/sections: %v", m)
	}
}

func TestLocalAnswerStableAndCaseInsensitive(t *testing.T) {
	r := newTestResolver(t, Resource{ID: "r1", Address: "**.example.com"})
	_, m1 := ask(t, r, "a.example.com", mdns.TypeA)
	_, m2 := ask(t, r, "A.EXAMPLE.com", mdns.TypeA) // 0x20 case: echoed as asked
	first, second := answerIPs(t, m1, "a.example.com"), answerIPs(t, m2, "A.EXAMPLE.com")
	if fmt.Sprint(first) != fmt.Sprint(second) {
		t.Errorf("same name, different IPs: %v vs %v", first, second)
	}
	_, m3 := ask(t, r, "b.example.com", mdns.TypeA)
	if third := answerIPs(t, m3, "b.example.com"); fmt.Sprint(third) == fmt.Sprint(first) {
		t.Errorf("different names share IPs %v", third)
	}
}

func TestProxyIPsUniqueAndStableAcrossManyNames(t *testing.T) {
	r := newTestResolver(t, Resource{ID: "r1", Address: "**.example.com"})
	const n = 5000
	seen := make(map[netip.Addr]string, 8*n)
	got := make(map[string]ProxyIPs, n)
	out := make([]byte, MaxResponseSize)
	for i := range n {
		name := fmt.Sprintf("host-%d.example.com", i)
		for _, qt := range []uint16{mdns.TypeA, mdns.TypeAAAA} {
			if res, err := r.HandleQuery(TransportUDP, mkQuery(t, name, qt, 1), out); err != nil || res.Action != ActionRespond {
				t.Fatalf("%s: %v %v", name, res.Action, err)
			}
		}
		p, ok := r.ProxyIPsOf(name)
		if !ok {
			t.Fatalf("%s has no IPs", name)
		}
		got[name] = p
		for _, a := range append(p.V4[:], p.V6[:]...) {
			if prev, dup := seen[a]; dup {
				t.Fatalf("%v given to %s and %s", a, prev, name)
			}
			if !IsProxyIP(a) {
				t.Fatalf("%v outside the proxy ranges", a)
			}
			seen[a] = name
		}
	}
	// Resource churn must not move anything.
	if err := r.SetResources(nil); err != nil {
		t.Fatal(err)
	}
	if err := r.SetResources([]Resource{{ID: "r2", Address: "*.example.com", IPStack: IPStackIPv6Only}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 7 {
		name := fmt.Sprintf("host-%d.example.com", i)
		_, m := ask(t, r, name, mdns.TypeAAAA)
		ips := answerIPs(t, m, name)
		if p := got[name]; len(ips) != 4 || ips[0] != p.V6[0] || ips[3] != p.V6[3] {
			t.Fatalf("%s moved: %v, was %v", name, ips, p.V6)
		}
		tgt, ok := r.LookupProxyIP(ips[1])
		if !ok || tgt.Name != name || tgt.ResourceID != "r2" {
			t.Fatalf("LookupProxyIP(%v) = %+v, %v", ips[1], tgt, ok)
		}
	}
}

func TestIPStack(t *testing.T) {
	r := newTestResolver(t,
		Resource{ID: "v4", Address: "v4.example.com", IPStack: IPStackIPv4Only},
		Resource{ID: "v6", Address: "v6.example.com", IPStack: IPStackIPv6Only},
		Resource{ID: "dual", Address: "dual.example.com", IPStack: IPStackDual},
	)
	tests := []struct {
		name    string
		qtype   uint16
		answers int
	}{
		{"v4.example.com", mdns.TypeA, 4},
		{"v4.example.com", mdns.TypeAAAA, 0},
		{"v6.example.com", mdns.TypeA, 0},
		{"v6.example.com", mdns.TypeAAAA, 4},
		{"dual.example.com", mdns.TypeA, 4},
		{"dual.example.com", mdns.TypeAAAA, 4},
	}
	for _, tc := range tests {
		res, m := ask(t, r, tc.name, tc.qtype)
		if res.Action != ActionRespond || m.Rcode != mdns.RcodeSuccess || len(m.Answer) != tc.answers {
			t.Errorf("%s %s: action %v rcode %d answers %d, want NOERROR with %d", tc.name, mdns.TypeToString[tc.qtype],
				res.Action, m.Rcode, len(m.Answer), tc.answers)
		}
	}
	// LookupProxyIP refuses the family the stack excludes.
	p4, _ := r.ProxyIPsOf("v4.example.com")
	if _, ok := r.LookupProxyIP(p4.V4[0]); !ok {
		t.Error("v4 proxy IP of ipv4_only resource not found")
	}
	if _, ok := r.LookupProxyIP(p4.V6[0]); ok {
		t.Error("v6 proxy IP of ipv4_only resource must not route")
	}
	if _, ok := r.LookupProxyIP(netip.AddrFrom16(p4.V4[2].As16())); !ok {
		t.Error("4in6-mapped proxy IP not found")
	}

	// Restricting the stack later keeps the addresses but hides AAAA.
	_, before := ask(t, r, "dual.example.com", mdns.TypeAAAA)
	if err := r.UpsertResource(Resource{ID: "dual", Address: "dual.example.com", IPStack: IPStackIPv4Only}); err != nil {
		t.Fatal(err)
	}
	if _, m := ask(t, r, "dual.example.com", mdns.TypeAAAA); len(m.Answer) != 0 || m.Rcode != mdns.RcodeSuccess {
		t.Errorf("AAAA after ipv4_only: %v", m)
	}
	if err := r.UpsertResource(Resource{ID: "dual", Address: "dual.example.com"}); err != nil {
		t.Fatal(err)
	}
	_, after := ask(t, r, "dual.example.com", mdns.TypeAAAA)
	if fmt.Sprint(answerIPs(t, before, "dual.example.com")) != fmt.Sprint(answerIPs(t, after, "dual.example.com")) {
		t.Error("AAAA changed across stack changes")
	}
}

func TestForwardDecisions(t *testing.T) {
	r := newTestResolver(t,
		Resource{ID: "site-a", Address: "**.corp.example.com"},
		Resource{ID: "site-b", Address: "db.corp.example.com"},
	)
	tests := []struct {
		name   string
		qtype  uint16
		action Action
		rid    string
	}{
		{"x.corp.example.com", mdns.TypeTXT, ActionForwardSite, "site-a"},
		{"_ldap._tcp.corp.example.com", mdns.TypeSRV, ActionForwardSite, "site-a"},
		{"db.corp.example.com", mdns.TypeMX, ActionForwardSite, "site-b"},
		{"db.corp.example.com", mdns.TypeCNAME, ActionForwardSite, "site-b"},
		{"example.com", mdns.TypeA, ActionForwardUpstream, ""},
		{"www.google.com", mdns.TypeAAAA, ActionForwardUpstream, ""},
		{"www.google.com", mdns.TypeTXT, ActionForwardUpstream, ""},
		{"1.1.1.1.in-addr.arpa", mdns.TypePTR, ActionForwardUpstream, ""},
		{"corp.example.com", mdns.TypeNS, ActionForwardSite, "site-a"},
	}
	for _, tc := range tests {
		q := mkQuery(t, tc.name, tc.qtype, 7)
		res, err := r.HandleQuery(TransportUDP, q, make([]byte, MaxResponseSize))
		if err != nil || res.Action != tc.action || res.ResourceID != tc.rid || res.Response != nil {
			t.Errorf("%s %s: %v %q %v, want %v %q", tc.name, mdns.TypeToString[tc.qtype], res.Action, res.ResourceID, err, tc.action, tc.rid)
		}
		if string(res.Query) != string(q) {
			t.Errorf("%s: Result.Query is not the query", tc.name)
		}
	}
	// The HTTPS record of a resource name is answered empty.
	res, m := ask(t, r, "x.corp.example.com", mdns.TypeHTTPS)
	if res.Action != ActionRespond || m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 0 {
		t.Errorf("HTTPS: %v %v", res.Action, m)
	}
	// Class CHAOS goes upstream even for resource names.
	m2 := new(mdns.Msg)
	m2.SetQuestion("x.corp.example.com.", mdns.TypeTXT)
	m2.Question[0].Qclass = mdns.ClassCHAOS
	b, _ := m2.Pack()
	if res, _ := r.HandleQuery(TransportUDP, b, make([]byte, MaxResponseSize)); res.Action != ActionForwardUpstream {
		t.Errorf("CHAOS: %v", res.Action)
	}
	st := r.Stats()
	if st.ForwardedSite != 5 || st.ForwardedUpstream != 5 || st.Answered != 1 || st.Queries != 11 {
		t.Errorf("stats %+v", st)
	}
}

func TestPTRForProxyIPs(t *testing.T) {
	r := newTestResolver(t, Resource{ID: "r", Address: "*.example.com"})
	ask(t, r, "app.example.com", mdns.TypeA)
	p, _ := r.ProxyIPsOf("app.example.com")
	for _, ip := range []netip.Addr{p.V4[2], p.V6[1]} {
		rev, err := mdns.ReverseAddr(ip.String())
		if err != nil {
			t.Fatal(err)
		}
		res, m := ask(t, r, rev, mdns.TypePTR)
		if res.Action != ActionRespond || len(m.Answer) != 1 {
			t.Fatalf("PTR %s: %v %v", rev, res.Action, m)
		}
		ptr, ok := m.Answer[0].(*mdns.PTR)
		if !ok || ptr.Ptr != "app.example.com." || ptr.Hdr.Ttl != TTL || ptr.Hdr.Name != rev {
			t.Errorf("PTR answer %v", m.Answer[0])
		}
	}
	// A proxy-range IP that was never assigned goes upstream.
	rev, _ := mdns.ReverseAddr("100.127.1.1")
	if res, _ := ask(t, r, rev, mdns.TypePTR); res.Action != ActionForwardUpstream {
		t.Errorf("unassigned PTR: %v", res.Action)
	}
}

func TestDoHCanary(t *testing.T) {
	r := newTestResolver(t)
	res, m := ask(t, r, "use-application-dns.net", mdns.TypeA)
	if res.Action != ActionRespond || m.Rcode != mdns.RcodeNameError || len(m.Answer) != 0 {
		t.Errorf("canary: %v %v", res.Action, m)
	}
}

func TestSearchDomain(t *testing.T) {
	r, err := NewResolver(Config{SearchDomain: "Corp.Example.com."})
	if err != nil {
		t.Fatal(err)
	}
	if r.SearchDomain() != "corp.example.com" {
		t.Fatalf("search domain %q", r.SearchDomain())
	}
	if err := r.SetResources([]Resource{{ID: "r", Address: "*.corp.example.com"}}); err != nil {
		t.Fatal(err)
	}
	_, m := ask(t, r, "gitlab", mdns.TypeA)
	ips := answerIPs(t, m, "gitlab") // owner is the name asked
	_, full := ask(t, r, "gitlab.corp.example.com", mdns.TypeA)
	if len(ips) != 4 || fmt.Sprint(ips) != fmt.Sprint(answerIPs(t, full, "gitlab.corp.example.com")) {
		t.Errorf("single-label and FQDN differ: %v", ips)
	}
	if res, _ := ask(t, r, "printer", mdns.TypeA); res.Action != ActionRespond {
		t.Errorf("expanded single label under a resource: %v", res.Action)
	}
	if err := r.SetSearchDomain(""); err != nil {
		t.Fatal(err)
	}
	if res, _ := ask(t, r, "gitlab", mdns.TypeA); res.Action != ActionForwardUpstream {
		t.Errorf("without search domain: %v", res.Action)
	}
	if err := r.SetSearchDomain("bad..domain"); err == nil {
		t.Error("invalid search domain accepted")
	}
}

func TestEDNS(t *testing.T) {
	r := newTestResolver(t, Resource{ID: "r", Address: "a.example.com"})
	for _, do := range []bool{false, true} {
		m := new(mdns.Msg)
		m.SetQuestion("a.example.com.", mdns.TypeAAAA)
		m.Id = 0x1234
		m.SetEdns0(4096, do)
		b, _ := m.Pack()
		res, err := r.HandleQuery(TransportUDP, b, make([]byte, MaxResponseSize))
		if err != nil || res.Action != ActionRespond {
			t.Fatal(res.Action, err)
		}
		resp := unpack(t, res.Response)
		opt := resp.IsEdns0()
		if opt == nil || opt.Do() != do || opt.UDPSize() != ednsUDPSize || opt.Version() != 0 {
			t.Errorf("OPT in response: %v (do=%v)", opt, do)
		}
		if len(resp.Answer) != 4 {
			t.Errorf("answers %d", len(resp.Answer))
		}
	}
}

func TestAssignmentsAndRebinding(t *testing.T) {
	r := newTestResolver(t, Resource{ID: "wide", Address: "**.example.com"})
	if _, ok := r.PollAssignment(); ok {
		t.Fatal("assignment before any query")
	}
	ask(t, r, "app.example.com", mdns.TypeA)
	a, ok := r.PollAssignment()
	if !ok || a.Name != "app.example.com" || a.ResourceID != "wide" || len(a.AppendIPs(nil)) != 8 {
		t.Fatalf("first assignment %+v %v", a, ok)
	}
	ask(t, r, "app.example.com", mdns.TypeAAAA)
	if _, ok := r.PollAssignment(); ok {
		t.Error("repeat query produced an assignment")
	}

	// A more specific resource takes the name over.
	if err := r.UpsertResource(Resource{ID: "narrow", Address: "app.example.com", IPStack: IPStackIPv6Only}); err != nil {
		t.Fatal(err)
	}
	a2, ok := r.PollAssignment()
	ips := a2.AppendIPs(nil)
	if !ok || a2.ResourceID != "narrow" || len(ips) != 4 || !ips[0].Is6() || a2.IPs != a.IPs {
		t.Fatalf("takeover assignment %+v %v", a2, ok)
	}
	if tgt, ok := r.LookupProxyIP(a.IPs.V6[0]); !ok || tgt.ResourceID != "narrow" || tgt.Name != "app.example.com" {
		t.Errorf("LookupProxyIP after takeover: %+v %v", tgt, ok)
	}
	if got := r.Assignments("narrow"); len(got) != 1 || got[0].Name != "app.example.com" {
		t.Errorf("Assignments(narrow) = %+v", got)
	}
	if got := r.Assignments("wide"); len(got) != 0 {
		t.Errorf("Assignments(wide) = %+v", got)
	}

	// Removing it falls back to the wide one.
	r.RemoveResource("narrow")
	if a3, ok := r.PollAssignment(); !ok || a3.ResourceID != "wide" {
		t.Errorf("fallback assignment %+v %v", a3, ok)
	}
	// Removing the last one unbinds without an assignment.
	r.RemoveResource("wide")
	if _, ok := r.PollAssignment(); ok {
		t.Error("unbinding produced an assignment")
	}
	if _, ok := r.LookupProxyIP(a.IPs.V4[0]); ok {
		t.Error("proxy IP of a name without resource still routes")
	}
	if res, _ := ask(t, r, "app.example.com", mdns.TypeA); res.Action != ActionForwardUpstream {
		t.Errorf("name without resource: %v", res.Action)
	}
	// A resource that comes back binds again, with the same IPs.
	if err := r.UpsertResource(Resource{ID: "back", Address: "*.example.com"}); err != nil {
		t.Fatal(err)
	}
	if a4, ok := r.PollAssignment(); !ok || a4.ResourceID != "back" || a4.IPs != a.IPs {
		t.Errorf("re-bind %+v %v", a4, ok)
	}
	if err := r.UpsertResource(Resource{ID: "x", Address: "a..b"}); !errors.Is(err, ErrInvalidPattern) {
		t.Errorf("invalid upsert: %v", err)
	}
	if _, ok := r.LookupProxyIP(netip.MustParseAddr("100.96.9.9")); ok {
		t.Error("unassigned IP found")
	}
}

func TestExhaustion(t *testing.T) {
	r, _ := NewResolver(Config{MaxNames: 2})
	_ = r.SetResources([]Resource{{ID: "r", Address: "**.example.com"}})
	for i, want := range []int{mdns.RcodeSuccess, mdns.RcodeSuccess, mdns.RcodeServerFailure} {
		_, m := ask(t, r, fmt.Sprintf("n%d.example.com", i), mdns.TypeA)
		if m.Rcode != want {
			t.Errorf("name %d: rcode %d, want %d", i, m.Rcode, want)
		}
	}
	// Tiny ranges: 6 usable v4 addresses → one name.
	r2 := newTestResolver(t, Resource{ID: "r", Address: "**.example.com"})
	r2.alloc = newProxyAllocator(netip.MustParsePrefix("100.96.0.0/29"), ProxyRangeV6)
	_, m := ask(t, r2, "a.example.com", mdns.TypeA)
	_, m2 := ask(t, r2, "b.example.com", mdns.TypeA)
	if len(m.Answer) != 4 || m2.Rcode != mdns.RcodeServerFailure {
		t.Errorf("tiny range: %v / %v", m, m2)
	}
	if _, ok := r2.ProxyIPsOf("b.example.com"); ok {
		t.Error("failed allocation left an entry")
	}
}

func TestLocalAnswerAllocs(t *testing.T) {
	r := newTestResolver(t, Resource{ID: "r", Address: "*.example.com"}, Resource{ID: "s", Address: "**.corp.example.com"})
	out := make([]byte, MaxResponseSize)
	qa := mkQuery(t, "app.example.com", mdns.TypeA, 1)
	qaaaa := mkQuery(t, "x.y.corp.example.com", mdns.TypeAAAA, 1)
	fwd := mkQuery(t, "www.example.org", mdns.TypeA, 1)
	site := mkQuery(t, "app.example.com", mdns.TypeTXT, 1)
	tcp, _ := AppendTCPFrame(nil, qa)
	for _, tc := range []struct {
		name string
		tr   Transport
		q    []byte
	}{{"A", TransportUDP, qa}, {"AAAA", TransportUDP, qaaaa}, {"upstream", TransportUDP, fwd}, {"site", TransportUDP, site}, {"tcp", TransportTCP, tcp}} {
		if _, err := r.HandleQuery(tc.tr, tc.q, out); err != nil { // first use assigns IPs
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(200, func() { _, _ = r.HandleQuery(tc.tr, tc.q, out) }); n != 0 {
			t.Errorf("%s: %v allocs per query, want 0", tc.name, n)
		}
	}
	ip, _ := r.ProxyIPsOf("app.example.com")
	if n := testing.AllocsPerRun(200, func() { r.LookupProxyIP(ip.V4[1]) }); n != 0 {
		t.Errorf("LookupProxyIP: %v allocs", n)
	}
}

func TestAnswerFitsUDPLimit(t *testing.T) {
	// The longest possible name (253 bytes) with EDNS still fits 512 bytes.
	label := "a123456789012345678901234567890123456789012345678901234567890bc"
	long := label + "." + label + "." + label + "." + label[:61]
	if len(long) != 253 {
		t.Fatalf("len %d", len(long))
	}
	r := newTestResolver(t, Resource{ID: "r", Address: "**." + label[:61]})
	m := new(mdns.Msg)
	m.SetQuestion(long+".", mdns.TypeAAAA)
	m.SetEdns0(1232, true)
	b, _ := m.Pack()
	res, err := r.HandleQuery(TransportTCP, binary.BigEndian.AppendUint16(nil, uint16(len(b))), nil)
	if err == nil {
		t.Errorf("malformed TCP accepted: %v", res.Action)
	}
	framed, _ := AppendTCPFrame(nil, b)
	res, err = r.HandleQuery(TransportTCP, framed, make([]byte, MaxResponseSize))
	if err != nil || res.Action != ActionRespond || len(res.Response)-2 > 512 {
		t.Fatalf("%v %v len %d", res.Action, err, len(res.Response))
	}
	if resp := unpack(t, res.Response[2:]); len(resp.Answer) != 4 {
		t.Errorf("answers %d", len(resp.Answer))
	}
	// And the PTR answer for it.
	p, _ := r.ProxyIPsOf(long)
	rev, _ := mdns.ReverseAddr(p.V6[0].String())
	_, pm := ask(t, r, rev, mdns.TypePTR)
	if len(pm.Answer) != 1 || pm.Answer[0].(*mdns.PTR).Ptr != long+"." {
		t.Errorf("PTR for long name: %v", pm)
	}
}

// TestConcurrentUse runs the packet path and resource churn on different
// goroutines (meaningful under -race) and checks the mapping stayed stable.
func TestConcurrentUse(t *testing.T) {
	r := newTestResolver(t, Resource{ID: "wide", Address: "**.example.com"})
	names := make([]string, 50)
	queries := make([][]byte, len(names))
	for i := range names {
		names[i] = fmt.Sprintf("n%d.example.com", i)
		queries[i] = mkQuery(t, names[i], mdns.TypeA, uint16(i))
	}
	// Assign everything first so the IPs to compare are known.
	out := make([]byte, MaxResponseSize)
	before := make([]ProxyIPs, len(names))
	for i, q := range queries {
		if _, err := r.HandleQuery(TransportUDP, q, out); err != nil {
			t.Fatal(err)
		}
		before[i], _ = r.ProxyIPsOf(names[i])
	}
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]byte, MaxResponseSize)
			for i := range 300 {
				k := (i + g) % len(names)
				_, _ = r.HandleQuery(TransportUDP, queries[k], out)
				r.LookupProxyIP(before[k].V4[i%4])
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 100 {
			_ = r.UpsertResource(Resource{ID: "narrow", Address: fmt.Sprintf("n%d.example.com", i%len(names)), IPStack: IPStack(i % 3)})
			r.PollAssignment()
			if i%10 == 0 {
				r.RemoveResource("narrow")
			}
		}
	}()
	wg.Wait()
	for i := range names {
		if p, ok := r.ProxyIPsOf(names[i]); !ok || p != before[i] {
			t.Fatalf("%s moved", names[i])
		}
	}
	if st := r.Stats(); st.Queries != uint64(len(names)+900) {
		t.Errorf("queries %d", st.Queries)
	}
}
