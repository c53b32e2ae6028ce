package acl

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"
)

var (
	t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

	aV4, aV6 = ap("100.64.0.1"), ap("fd00:2021:1111::1") // client A
	bV4, bV6 = ap("100.64.0.2"), ap("fd00:2021:1111::2") // client B
	gwV4     = ap("100.64.0.254")
	gwV6     = ap("fd00:2021:1111::fe")
)

// fixture:
//
//	A: R1 10/8 tcp 22; R2 10.1/16 tcp 443-444 + udp 53; R3 192.168.1/24 icmp;
//	   R4 2001:db8::/32 permit-all; R5 DNS (proxy IPs) tcp 80;
//	   R7 172.16/12 expired; R9 10.1.2.0/24 permit-all, expired.
//	   Not authorized: R8 203.0.113.0/24.
//	B: internet (permit-all) + R8 203.0.113.0/24 tcp 443.
func fixture(t testing.TB) *Table {
	tab := New()
	tab.SetGatewayAddrs(gwV4, gwV6)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tab.UpsertResource(Resource{ID: rsc(1), Kind: KindCIDR, Prefix: pfx("10.0.0.0/8"), Filters: []Filter{tcpF(22, 22)}}))
	must(tab.UpsertResource(Resource{ID: rsc(2), Kind: KindCIDR, Prefix: pfx("10.1.0.0/16"), Filters: []Filter{tcpF(443, 444), udpF(53, 53)}}))
	must(tab.UpsertResource(Resource{ID: rsc(3), Kind: KindCIDR, Prefix: pfx("192.168.1.0/24"), Filters: []Filter{icmpF()}}))
	must(tab.UpsertResource(Resource{ID: rsc(4), Kind: KindCIDR, Prefix: pfx("2001:db8::/32")}))
	must(tab.UpsertResource(Resource{ID: rsc(5), Kind: KindDNS, Filters: []Filter{tcpF(80, 80)}}))
	must(tab.UpsertResource(Resource{ID: rsc(6), Kind: KindInternet}))
	must(tab.UpsertResource(Resource{ID: rsc(7), Kind: KindCIDR, Prefix: pfx("172.16.0.0/12")}))
	must(tab.UpsertResource(Resource{ID: rsc(8), Kind: KindCIDR, Prefix: pfx("203.0.113.0/24"), Filters: []Filter{tcpF(443, 443)}}))
	must(tab.UpsertResource(Resource{ID: rsc(9), Kind: KindCIDR, Prefix: pfx("10.1.2.0/24")}))
	tab.UpsertClient(cid(1), aV4, aV6)
	tab.UpsertClient(cid(2), bV4, bV6)
	for _, r := range []byte{1, 2, 3, 4, 5} {
		must(tab.Authorize(cid(1), rsc(r), t0.Add(time.Hour)))
	}
	must(tab.Authorize(cid(1), rsc(7), t0.Add(-time.Second)))
	must(tab.Authorize(cid(1), rsc(9), t0))
	must(tab.SetProxyIPs(cid(1), rsc(5), "app.corp.example", []netip.Addr{ap("100.96.0.1"), ap("fd00:2021:1111:8000::1")}))
	must(tab.Authorize(cid(2), rsc(6), time.Time{}))
	must(tab.Authorize(cid(2), rsc(8), time.Time{}))
	return tab
}

func TestCheck(t *testing.T) {
	tab := fixture(t)
	type tc struct {
		name   string
		client ClientID
		proto  string
		src    netip.Addr
		dst    string
		dport  uint16
		want   Verdict
	}
	cases := []tc{
		{"allowed tcp 22 in 10/8", cid(1), "tcp", aV4, "10.9.9.9", 22, Allow},
		{"wrong port", cid(1), "tcp", aV4, "10.9.9.9", 23, DropFiltered},
		{"wrong protocol", cid(1), "udp", aV4, "10.9.9.9", 22, DropFiltered},
		{"overlap: inner resource allows 443", cid(1), "tcp", aV4, "10.1.9.9", 443, Allow},
		{"overlap: outer resource allows 22 inside inner", cid(1), "tcp", aV4, "10.1.9.9", 22, Allow},
		{"overlap: neither allows", cid(1), "tcp", aV4, "10.1.9.9", 8080, DropFiltered},
		{"overlap: udp 53 in inner", cid(1), "udp", aV4, "10.1.0.1", 53, Allow},
		{"port range upper bound", cid(1), "tcp", aV4, "10.1.0.1", 444, Allow},
		{"port range above", cid(1), "tcp", aV4, "10.1.0.1", 445, DropFiltered},
		{"expired innermost, live outer filters", cid(1), "tcp", aV4, "10.1.2.3", 9999, DropFiltered},
		{"expired innermost, live outer allows", cid(1), "tcp", aV4, "10.1.2.3", 443, Allow},
		{"icmp allowed", cid(1), "icmp", aV4, "192.168.1.5", 7, Allow},
		{"tcp on icmp-only", cid(1), "tcp", aV4, "192.168.1.5", 80, DropFiltered},
		{"icmp on tcp-only", cid(1), "icmp", aV4, "10.9.9.9", 1, DropFiltered},
		{"other protocol on filtered resource", cid(1), "gre", aV4, "10.9.9.9", 0, DropFiltered},
		{"other protocol on permit-all", cid(1), "gre", aV6, "2001:db8::1", 0, Allow},
		{"permit-all v6", cid(1), "udp", aV6, "2001:db8:ffff::1", 12345, Allow},
		{"dns proxy v4 allowed", cid(1), "tcp", aV4, "100.96.0.1", 80, Allow},
		{"dns proxy v4 wrong port", cid(1), "tcp", aV4, "100.96.0.1", 81, DropFiltered},
		{"dns proxy v6 allowed", cid(1), "tcp", aV6, "fd00:2021:1111:8000::1", 80, Allow},
		{"unassigned proxy ip", cid(1), "tcp", aV4, "100.96.0.2", 80, DropNoResource},
		{"unauthorized resource", cid(1), "tcp", aV4, "203.0.113.5", 443, DropNoResource},
		{"no resource at all", cid(1), "tcp", aV4, "8.8.8.8", 443, DropNoResource},
		{"expired authorization", cid(1), "tcp", aV4, "172.16.0.1", 22, DropExpired},
		{"spoofed source v4", cid(1), "tcp", bV4, "10.9.9.9", 22, DropSpoofedSource},
		{"spoofed source v6", cid(1), "tcp", ap("2001:db8::99"), "2001:db8::1", 22, DropSpoofedSource},
		{"unknown client", cid(3), "tcp", aV4, "10.9.9.9", 22, DropUnknownClient},
		{"to gateway dns", cid(1), "udp", aV4, "100.64.0.254", 53535, AllowGateway},
		{"to gateway v6", cid(1), "udp", aV6, "fd00:2021:1111::fe", 53535, AllowGateway},
		{"to another peer", cid(1), "tcp", aV4, "100.64.0.2", 22, DropPeerDestination},
		// Internet resource (client B).
		{"internet public v4", cid(2), "tcp", bV4, "8.8.8.8", 443, Allow},
		{"internet public v6", cid(2), "udp", bV6, "2606:4700::1111", 53, Allow},
		{"internet unions with covering cidr filter", cid(2), "tcp", bV4, "203.0.113.5", 22, Allow},
		{"internet rejects rfc1918 10/8", cid(2), "tcp", bV4, "10.0.0.1", 22, DropForbiddenDestination},
		{"internet rejects rfc1918 172.16/12", cid(2), "tcp", bV4, "172.31.255.255", 22, DropForbiddenDestination},
		{"internet rejects rfc1918 192.168/16", cid(2), "tcp", bV4, "192.168.0.1", 22, DropForbiddenDestination},
		{"internet rejects loopback", cid(2), "tcp", bV4, "127.0.0.1", 22, DropForbiddenDestination},
		{"internet rejects link-local", cid(2), "tcp", bV4, "169.254.169.254", 80, DropForbiddenDestination},
		{"internet rejects cgnat", cid(2), "tcp", bV4, "100.127.0.1", 80, DropForbiddenDestination},
		{"internet rejects proxy range", cid(2), "tcp", bV4, "100.96.0.1", 80, DropForbiddenDestination},
		{"internet rejects multicast", cid(2), "udp", bV4, "224.0.0.251", 5353, DropForbiddenDestination},
		{"internet rejects broadcast", cid(2), "udp", bV4, "255.255.255.255", 67, DropForbiddenDestination},
		{"internet rejects 240/4", cid(2), "udp", bV4, "240.0.0.1", 67, DropForbiddenDestination},
		{"internet rejects this-network", cid(2), "udp", bV4, "0.0.0.0", 67, DropForbiddenDestination},
		{"internet rejects ula", cid(2), "udp", bV6, "fd12:3456::1", 53, DropForbiddenDestination},
		{"internet rejects v6 loopback", cid(2), "udp", bV6, "::1", 53, DropForbiddenDestination},
		{"internet rejects v6 link-local", cid(2), "udp", bV6, "fe80::1", 53, DropForbiddenDestination},
		{"internet rejects v6 multicast", cid(2), "udp", bV6, "ff02::1", 53, DropForbiddenDestination},
		{"internet rejects v4-mapped", cid(2), "udp", bV6, "::ffff:8.8.8.8", 53, DropForbiddenDestination},
		{"internet rejects unspecified v6", cid(2), "udp", bV6, "::", 53, DropForbiddenDestination},
		{"cidr filter wins over forbidden internet? no cidr there", cid(2), "tcp", bV4, "203.0.113.5", 443, Allow},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := pkt(t, c.proto, c.src, ap(c.dst), 40000, c.dport)
			if got := tab.Check(c.client, p, t0); got != c.want {
				t.Fatalf("Check = %v, want %v", got, c.want)
			}
			if got := tab.CheckBytes(c.client, p.Bytes(), t0); got != c.want {
				t.Fatalf("CheckBytes = %v, want %v", got, c.want)
			}
		})
	}
}

func TestExpiryBoundary(t *testing.T) {
	tab := fixture(t)
	p := pkt(t, "tcp", aV4, ap("10.9.9.9"), 1, 22)
	if v := tab.Check(cid(1), p, t0.Add(time.Hour-time.Nanosecond)); v != Allow {
		t.Fatalf("just before expiry: %v", v)
	}
	if v := tab.Check(cid(1), p, t0.Add(time.Hour)); v != DropExpired {
		t.Fatalf("at expiry: %v", v)
	}
	// Re-authorizing extends it.
	if err := tab.Authorize(cid(1), rsc(1), t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if v := tab.Check(cid(1), p, t0.Add(time.Hour)); v != Allow {
		t.Fatalf("after extension: %v", v)
	}
}

func TestWriterOperations(t *testing.T) {
	tab := fixture(t)
	p22 := pkt(t, "tcp", aV4, ap("10.9.9.9"), 1, 22)
	p80 := pkt(t, "tcp", aV4, ap("10.9.9.9"), 1, 80)

	// resource_updated changes filters for every holder.
	if err := tab.UpsertResource(Resource{ID: rsc(1), Kind: KindCIDR, Prefix: pfx("10.0.0.0/8"), Filters: []Filter{tcpF(80, 80)}}); err != nil {
		t.Fatal(err)
	}
	if tab.Check(cid(1), p22, t0) != DropFiltered || tab.Check(cid(1), p80, t0) != Allow {
		t.Fatal("filter update not applied")
	}
	// Revoke.
	n, err := tab.Revoke(cid(1), rsc(1))
	if err != nil || n != 6 {
		t.Fatalf("Revoke: %d %v", n, err)
	}
	if v := tab.Check(cid(1), p80, t0); v != DropNoResource {
		t.Fatalf("after revoke: %v", v)
	}
	// Client handle survives updates, dies with RemoveClient.
	h := tab.Client(cid(1))
	tab.UpsertClient(cid(1), ap("100.64.0.9"), aV6)
	if h != tab.Client(cid(1)) {
		t.Fatal("handle changed on address update")
	}
	if v := h.Check(pkt(t, "tcp", aV4, ap("10.1.0.1"), 1, 443), t0); v != DropSpoofedSource {
		t.Fatalf("old address after readdressing: %v", v)
	}
	if v4, _ := h.Addrs(); v4 != ap("100.64.0.9") {
		t.Fatal("Addrs")
	}
	tab.RemoveClient(cid(1))
	if v := h.Check(p80, t0); v != DropUnknownClient {
		t.Fatalf("removed client's handle: %v", v)
	}
	if tab.Client(cid(1)) != nil || tab.NumClients() != 1 {
		t.Fatal("client still indexed")
	}
	// Errors.
	if err := tab.Authorize(cid(1), rsc(1), t0); !errors.Is(err, ErrUnknownClient) {
		t.Fatal(err)
	}
	if err := tab.Authorize(cid(2), rsc(77), t0); !errors.Is(err, ErrUnknownResource) {
		t.Fatal(err)
	}
	if err := tab.UpsertResource(Resource{ID: rsc(50), Kind: KindCIDR}); !errors.Is(err, ErrInvalidResource) {
		t.Fatal(err)
	}
	if err := tab.UpsertResource(Resource{ID: rsc(50)}); !errors.Is(err, ErrInvalidResource) {
		t.Fatal(err)
	}
	if err := tab.SetProxyIPs(cid(9), rsc(5), "x", nil); !errors.Is(err, ErrUnknownClient) {
		t.Fatal(err)
	}
	// RemoveResource drops the authorization.
	tab.RemoveResource(rsc(6))
	if v := tab.Check(cid(2), pkt(t, "tcp", bV4, ap("8.8.8.8"), 1, 443), t0); v != DropNoResource {
		t.Fatalf("removed internet resource: %v", v)
	}
	if tab.Authorizations(cid(2)) != 1 {
		t.Fatal("authorization count")
	}
}

func TestProxyIPsUpdate(t *testing.T) {
	tab := fixture(t)
	p := pkt(t, "tcp", aV4, ap("100.96.0.1"), 1, 80)
	q := pkt(t, "tcp", aV4, ap("100.96.0.2"), 1, 80)
	if err := tab.SetProxyIPs(cid(1), rsc(5), "other.corp.example", []netip.Addr{ap("100.96.0.2")}); err != nil {
		t.Fatal(err)
	}
	if tab.Check(cid(1), p, t0) != Allow || tab.Check(cid(1), q, t0) != Allow {
		t.Fatal("second domain's proxy IPs not applied")
	}
	if err := tab.SetProxyIPs(cid(1), rsc(5), "app.corp.example", nil); err != nil {
		t.Fatal(err)
	}
	if tab.Check(cid(1), p, t0) != DropNoResource || tab.Check(cid(1), q, t0) != Allow {
		t.Fatal("removing one domain")
	}
	// Proxy IPs of an unauthorized client/resource pair do nothing.
	if err := tab.SetProxyIPs(cid(2), rsc(5), "app.corp.example", []netip.Addr{ap("100.96.0.9")}); err != nil {
		t.Fatal(err)
	}
	if v := tab.Check(cid(2), pkt(t, "tcp", bV4, ap("100.96.0.9"), 1, 80), t0); v != DropForbiddenDestination {
		t.Fatalf("unauthorized DNS resource: %v", v)
	}
}

func TestRetainAndExpire(t *testing.T) {
	tab := fixture(t)
	emptied := tab.RetainAuthorizations([]Authorization{
		{Client: cid(2), Resource: rsc(8), Expires: t0.Add(time.Minute)},
		{Client: cid(9), Resource: rsc(8)},  // unknown client: ignored
		{Client: cid(2), Resource: rsc(99)}, // unknown resource: ignored
	})
	if !slices.Equal(emptied, []ClientID{cid(1)}) {
		t.Fatalf("emptied %v", emptied)
	}
	if v := tab.Check(cid(1), pkt(t, "tcp", aV4, ap("10.9.9.9"), 1, 22), t0); v != DropNoResource {
		t.Fatalf("client 1 after retain: %v", v)
	}
	if v := tab.Check(cid(2), pkt(t, "tcp", bV4, ap("8.8.8.8"), 1, 443), t0); v != DropNoResource {
		t.Fatalf("dropped internet authorization: %v", v)
	}
	if v := tab.Check(cid(2), pkt(t, "tcp", bV4, ap("203.0.113.1"), 1, 443), t0); v != Allow {
		t.Fatalf("kept authorization: %v", v)
	}
	if got := tab.ExpireAuthorizations(t0); len(got) != 0 {
		t.Fatalf("premature expiry %v", got)
	}
	if got := tab.ExpireAuthorizations(t0.Add(time.Minute)); !slices.Equal(got, []ClientID{cid(2)}) {
		t.Fatalf("expired %v", got)
	}
	if tab.Authorizations(cid(2)) != 0 {
		t.Fatal("authorization not freed")
	}
	// A resource update must not resurrect anything for the emptied client.
	if err := tab.UpsertResource(Resource{ID: rsc(8), Kind: KindCIDR, Prefix: pfx("203.0.113.0/24")}); err != nil {
		t.Fatal(err)
	}
	if v := tab.Check(cid(2), pkt(t, "tcp", bV4, ap("203.0.113.1"), 1, 443), t0); v != DropNoResource {
		t.Fatalf("after expiry: %v", v)
	}
}

func TestFilterCompile(t *testing.T) {
	f := compileFilters([]Filter{tcpF(100, 200), tcpF(150, 300), tcpF(301, 310), tcpF(500, 400), udpF(0, 65535), tcpF(65535, 65535)})
	if len(f.tcp) != 2 || f.tcp[0] != (portRange{100, 310}) || f.tcp[1] != (portRange{65535, 65535}) {
		t.Fatalf("tcp ranges %v", f.tcp)
	}
	if len(f.udp) != 1 || f.icmp || f.all {
		t.Fatalf("compiled %+v", f)
	}
	for port, want := range map[uint16]bool{99: false, 100: true, 310: true, 311: false, 450: false, 65535: true} {
		if inRanges(f.tcp, port) != want {
			t.Errorf("port %d: %v", port, !want)
		}
	}
	if !compileFilters(nil).all {
		t.Fatal("empty filters must permit all")
	}
}

func TestVerdictICMP(t *testing.T) {
	for v := Verdict(0); v < numVerdicts; v++ {
		_, send := v.ICMP()
		if v.Allowed() && send {
			t.Errorf("%v: ICMP for an allowed packet", v)
		}
		if v.String() == "invalid" {
			t.Errorf("verdict %d has no name", v)
		}
	}
	if _, send := DropSpoofedSource.ICMP(); send {
		t.Error("ICMP answer to a spoofed source")
	}
	if k, _ := DropForbiddenDestination.ICMP(); k != 2 /* ippacket.NetUnreachable */ {
		t.Error("forbidden destination must be net-unreachable")
	}
}
