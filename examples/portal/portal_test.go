package devportal

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v3"

	"github.com/gozone/gozone/connlib/portal"
	"github.com/gozone/gozone/examples/portal/relay"
)

const (
	gwTokenHQ     = "gw-token-hq-0123456789"
	gwTokenBranch = "gw-token-branch-012345"
	aliceToken    = "client-token-alice-0123"
	bobToken      = "client-token-bob-012345"
)

func testConfig(t *testing.T) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(`
account: {slug: acme}
dns: {search_domain: corp.example.com, upstream_do53: [1.1.1.1]}
sites:
  - {name: hq, gateway_tokens: ["` + gwTokenHQ + `"]}
  - {name: branch, gateway_tokens: ["` + gwTokenBranch + `"]}
actors:
  - {name: alice, email: alice@example.com, groups: [eng], tokens: ["` + aliceToken + `"]}
  - {name: bob, groups: [sales], tokens: ["` + bobToken + `"]}
resources:
  - {name: web, type: cidr, address: 172.20.0.0/16, sites: [hq], filters: [{protocol: tcp, ports: "80-443"}]}
  - {name: api, type: ip, address: 10.9.9.9, sites: [hq]}
  - {name: wiki, type: dns, address: "*.wiki.corp", sites: [branch]}
  - {name: crm, type: cidr, address: 10.50.0.0/16, sites: [hq]}
policies:
  - {group: eng, resource: web}
  - {group: eng, resource: api}
  - {group: eng, resource: wiki}
  - {group: sales, resource: crm}
relays:
  builtin: {enabled: true, min_port: 42000, max_port: 48000}
`))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func resourceID(t *testing.T, init *portal.ClientInit, name string) string {
	t.Helper()
	for _, r := range init.Resources {
		if r.Name == name {
			return r.ID
		}
	}
	t.Fatalf("resource %q not in init %+v", name, init.Resources)
	return ""
}

func TestAuthorizationFlowOverWebSockets(t *testing.T) {
	p := startPortal(t, Options{Config: testConfig(t)})
	gw := connectDevice(t, p, portal.TopicGateway, gwTokenHQ, "gw-1")
	gi := decodeAs[portal.GatewayInit](t, portal.DecodeGatewayIngress, "init", gw.expect("init"))
	if gi.AccountSlug != "acme" || !gi.Interface.IPv4.IsValid() || !gi.Interface.IPv6.IsValid() || gi.FlowLogs == nil {
		t.Fatalf("gateway init %+v", gi)
	}
	if len(gi.Relays) != 1 || gi.Relays[0].Addr != p.RelayAddr().String() || gi.Relays[0].ExpiresAt != relay.GatewayCredentialExpiry ||
		!strings.HasPrefix(gi.Relays[0].Username, "2145916800:"+relay.Salt(gw.key)) {
		t.Fatalf("gateway relays %+v", gi.Relays)
	}

	cl := connectDevice(t, p, portal.TopicClient, aliceToken, "laptop-1")
	ci := decodeAs[portal.ClientInit](t, portal.DecodeClientIngress, "init", cl.expect("init"))
	if len(ci.Resources) != 3 { // web, api, wiki; not crm
		t.Fatalf("client resources %+v", ci.Resources)
	}
	if ci.Interface.SearchDomain == nil || *ci.Interface.SearchDomain != "corp.example.com" || len(ci.Interface.UpstreamDo53) != 1 {
		t.Fatalf("client interface %+v", ci.Interface)
	}
	for _, r := range ci.Resources {
		if r.Name == "api" && (r.Type != portal.ResourceCIDR || r.Address != "10.9.9.9/32") {
			t.Fatalf("ip resource rendered as %+v", r)
		}
	}
	web := resourceID(t, ci, "web")

	// The client's relay credentials work on the built-in relay.
	allocateWith(t, ci.Relays[0])

	cl.push(portal.EventRequestAuthorization, portal.RequestAuthorization{ResourceID: web, ConnectedGatewayIDs: []string{}})
	ca := decodeAs[portal.CreateAuthorization](t, portal.DecodeGatewayIngress, "create_authorization", gw.expect("create_authorization"))
	if ca.Resource.ID != web || ca.Resource.Type != "cidr" || ca.Resource.Address != "172.20.0.0/16" || len(ca.Resource.Filters) != 1 {
		t.Fatalf("resource %+v", ca.Resource)
	}
	if ca.Client.PublicKey != cl.key || ca.Client.IPv4 != ci.Interface.IPv4 || ca.Client.Version != "1.5.12" {
		t.Fatalf("client %+v", ca.Client)
	}
	if ca.Subject == nil || ca.Subject.ActorEmail != "alice@example.com" || ca.FlowLogsIngestToken == "" || ca.UseIceless {
		t.Fatalf("create_authorization %+v", ca)
	}

	// A forged ref is refused; the signed one is accepted.
	if _, err := gw.request(portal.EventAuthorizationCreated, portal.AuthorizationRef{Ref: ca.Ref + "x"}); err == nil {
		t.Fatal("forged ref accepted")
	}
	if _, err := gw.request(portal.EventAuthorizationCreated, portal.AuthorizationRef{Ref: ca.Ref}); err != nil {
		t.Fatalf("authorization_created: %v", err)
	}
	ac := decodeAs[portal.AuthorizationCreated](t, portal.DecodeClientIngress, "authorization_created", cl.expect("authorization_created"))
	if ac.ResourceID != web || ac.GatewayPublicKey != gw.key || ac.GatewayIPv4 != gi.Interface.IPv4 || ac.GatewayIPv6 != gi.Interface.IPv6 || ac.SiteID == "" {
		t.Fatalf("authorization_created %+v", ac)
	}
	// Both sides hold the same credentials and PSK, derived as the reference says.
	if ac.PresharedKey != ca.Client.PresharedKey || ac.ClientICECredentials != ca.ClientICECredentials || ac.GatewayICECredentials != ca.GatewayICECredentials {
		t.Fatalf("mismatch:\nclient  %+v\ngateway %+v", ac, ca)
	}
	wantC, wantG := ICECredentials(ca.Client.ID, cl.key, ac.GatewayID, gw.key)
	if ac.ClientICECredentials != wantC || ac.GatewayICECredentials != wantG {
		t.Fatalf("ICE credentials not derived from ids and keys")
	}
	if ac.ClientICECredentials == ac.GatewayICECredentials || len(ac.PresharedKey) != 44 {
		t.Fatalf("degenerate credentials %+v", ac)
	}

	// Candidates both ways, and invalidations.
	cands := []string{"candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"}
	gw.push(portal.EventBroadcastIceCandidates, portal.BroadcastCandidates{ClientIDs: []string{ca.Client.ID, "not-a-client"}, Candidates: cands})
	gc := decodeAs[portal.GatewayCandidates](t, portal.DecodeClientIngress, "ice_candidates", cl.expect("ice_candidates"))
	if gc.GatewayID != ac.GatewayID || len(gc.Candidates) != 1 || gc.Candidates[0] != cands[0] {
		t.Fatalf("client got %+v", gc)
	}
	cl.push(portal.EventNewGatewayIceCandidates, portal.GatewayCandidates{GatewayID: ac.GatewayID, Candidates: cands})
	cc := decodeAs[portal.ClientCandidates](t, portal.DecodeGatewayIngress, "ice_candidates", gw.expect("ice_candidates"))
	if cc.ClientID != ca.Client.ID || cc.Candidates[0] != cands[0] {
		t.Fatalf("gateway got %+v", cc)
	}
	gw.push(portal.EventBroadcastInvalidatedIceCandidates, portal.BroadcastCandidates{ClientIDs: []string{ca.Client.ID}, Candidates: cands})
	cl.expect("invalidate_ice_candidates")
	cl.push(portal.EventInvalidateGatewayIceCandidates, portal.GatewayCandidates{GatewayID: ac.GatewayID, Candidates: cands})
	gw.expect("invalidate_ice_candidates")

	// no_relays is answered with relays_presence.
	gw.push(portal.EventNoRelays, portal.Empty{})
	rp := decodeAs[portal.RelaysPresence](t, portal.DecodeGatewayIngress, "relays_presence", gw.expect("relays_presence"))
	if len(rp.Connected) != 1 || rp.DisconnectedIDs == nil {
		t.Fatalf("relays_presence %+v", rp)
	}
	cl.push(portal.EventNoRelays, portal.Empty{})
	cl.expect("relays_presence")

	// Unknown events get unknown_message; set_snownet_capabilities is accepted silently.
	if _, err := cl.request("teleport", map[string]int{}); err == nil || !strings.Contains(err.Error(), "unknown_message") {
		t.Fatalf("unknown event: %v", err)
	}

	// A reconnecting gateway gets the authorization back in init.
	gw.stop()
	waitUntil(t, "gateway gone", func() bool { return p.Status().Gateways == 0 })
	gw2 := connectDevice(t, p, portal.TopicGateway, gwTokenHQ, "gw-1")
	gi2 := decodeAs[portal.GatewayInit](t, portal.DecodeGatewayIngress, "init", gw2.expect("init"))
	if len(gi2.Authorizations) != 1 || gi2.Authorizations[0].ClientID != ca.Client.ID || gi2.Authorizations[0].ResourceID != web {
		t.Fatalf("authorizations after reconnect %+v", gi2.Authorizations)
	}
	if gi2.Interface != gi.Interface {
		t.Fatalf("gateway addresses changed across reconnect")
	}
}

// allocateWith allocates on the relay with portal-minted credentials.
func allocateWith(t *testing.T, r portal.Relay) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: r.Addr, TURNServerAddr: r.Addr, Username: r.Username,
		Password: r.Password, Realm: relay.Realm, Conn: conn, RTO: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	a, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate with portal credentials: %v", err)
	}
	a.Close()
}

func TestPolicyDenialAndNotFound(t *testing.T) {
	p := startPortal(t, Options{Config: testConfig(t)})
	connectDevice(t, p, portal.TopicGateway, gwTokenHQ, "gw-1").expect("init")
	alice := connectDevice(t, p, portal.TopicClient, aliceToken, "laptop-a")
	alice.expect("init")
	bob := connectDevice(t, p, portal.TopicClient, bobToken, "laptop-b")
	bi := decodeAs[portal.ClientInit](t, portal.DecodeClientIngress, "init", bob.expect("init"))
	crm := resourceID(t, bi, "crm")

	// alice may not use crm even though she knows its id.
	alice.push(portal.EventRequestAuthorization, portal.RequestAuthorization{ResourceID: crm})
	f := decodeAs[portal.AuthorizationCreationFailed](t, portal.DecodeClientIngress, "authorization_creation_failed", alice.expect("authorization_creation_failed"))
	if f.Reason != portal.ReasonForbidden || f.ResourceID != crm {
		t.Fatalf("%+v", f)
	}
	alice.push(portal.EventRequestAuthorization, portal.RequestAuthorization{ResourceID: "00000000-0000-4000-8000-000000000000"})
	f = decodeAs[portal.AuthorizationCreationFailed](t, portal.DecodeClientIngress, "authorization_creation_failed", alice.expect("authorization_creation_failed"))
	if f.Reason != portal.ReasonNotFound {
		t.Fatalf("%+v", f)
	}
	if s := p.Status(); s.PendingAuthorizations != 0 || s.Authorizations != 0 {
		t.Fatalf("denials left state: %+v", s)
	}
}

func TestGatewayOfflineAfterTimeout(t *testing.T) {
	clock := newFakeClock()
	p := startPortal(t, Options{Config: testConfig(t), Clock: clock})
	cl := connectDevice(t, p, portal.TopicClient, aliceToken, "laptop-1")
	ci := decodeAs[portal.ClientInit](t, portal.DecodeClientIngress, "init", cl.expect("init"))
	web, wiki := resourceID(t, ci, "web"), resourceID(t, ci, "wiki")

	// No gateway in the site: offline at once.
	cl.push(portal.EventRequestAuthorization, portal.RequestAuthorization{ResourceID: wiki})
	f := decodeAs[portal.AuthorizationCreationFailed](t, portal.DecodeClientIngress, "authorization_creation_failed", cl.expect("authorization_creation_failed"))
	if f.Reason != portal.ReasonOffline || f.ResourceID != wiki {
		t.Fatalf("%+v", f)
	}

	// A gateway that never answers: offline after 15 s of the injected clock.
	gw := connectDevice(t, p, portal.TopicGateway, gwTokenHQ, "gw-silent")
	gw.expect("init")
	cl.push(portal.EventRequestAuthorization, portal.RequestAuthorization{ResourceID: web})
	gw.expect("create_authorization")
	clock.Advance(DefaultAuthorizationTimeout - time.Second)
	if s := p.Status(); s.PendingAuthorizations != 1 {
		t.Fatalf("pending before the timeout: %+v", s)
	}
	if n := cl.count("authorization_creation_failed"); n != 0 {
		t.Fatalf("failed early (%d)", n)
	}
	clock.Advance(time.Second)
	f = decodeAs[portal.AuthorizationCreationFailed](t, portal.DecodeClientIngress, "authorization_creation_failed", cl.expect("authorization_creation_failed"))
	if f.Reason != portal.ReasonOffline || f.ResourceID != web {
		t.Fatalf("%+v", f)
	}
	if s := p.Status(); s.PendingAuthorizations != 0 || s.Authorizations != 0 {
		t.Fatalf("state after timeout %+v", s)
	}

	// A gateway that goes away while the request is pending: offline at once.
	cl.push(portal.EventRequestAuthorization, portal.RequestAuthorization{ResourceID: web})
	gw.expect("create_authorization")
	gw.stop()
	f = decodeAs[portal.AuthorizationCreationFailed](t, portal.DecodeClientIngress, "authorization_creation_failed", cl.expect("authorization_creation_failed"))
	if f.Reason != portal.ReasonOffline {
		t.Fatalf("%+v", f)
	}
}

func TestAuthorizationExpiry(t *testing.T) {
	clock := newFakeClock()
	cfg := testConfig(t)
	cfg.AuthorizationLifetime = time.Hour
	p := startPortal(t, Options{Config: cfg, Clock: clock})
	gw := connectDevice(t, p, portal.TopicGateway, gwTokenHQ, "gw-1")
	gw.expect("init")
	cl := connectDevice(t, p, portal.TopicClient, aliceToken, "laptop-1")
	web := resourceID(t, decodeAs[portal.ClientInit](t, portal.DecodeClientIngress, "init", cl.expect("init")), "web")
	cl.push(portal.EventRequestAuthorization, portal.RequestAuthorization{ResourceID: web})
	ca := decodeAs[portal.CreateAuthorization](t, portal.DecodeGatewayIngress, "create_authorization", gw.expect("create_authorization"))
	if ca.ExpiresAt == nil || *ca.ExpiresAt != clock.Now().Add(time.Hour).Unix() {
		t.Fatalf("expires_at %v", ca.ExpiresAt)
	}
	if _, err := gw.request(portal.EventAuthorizationCreated, portal.AuthorizationRef{Ref: ca.Ref}); err != nil {
		t.Fatal(err)
	}
	cl.expect("authorization_created")
	clock.Advance(time.Hour - time.Second)
	if p.Status().Authorizations != 1 {
		t.Fatal("expired early")
	}
	clock.Advance(time.Second)
	ra := decodeAs[portal.RejectAccess](t, portal.DecodeGatewayIngress, "reject_access", gw.expect("reject_access"))
	if ra.ClientID != ca.Client.ID || ra.ResourceID != web || p.Status().Authorizations != 0 {
		t.Fatalf("reject_access %+v, status %+v", ra, p.Status())
	}
}

func TestPendingAuthorizationsBoundedPerClient(t *testing.T) {
	p := startPortal(t, Options{Config: testConfig(t), Clock: newFakeClock()})
	gw := connectDevice(t, p, portal.TopicGateway, gwTokenHQ, "gw-silent")
	gw.expect("init")
	cl := connectDevice(t, p, portal.TopicClient, aliceToken, "laptop-1")
	web := resourceID(t, decodeAs[portal.ClientInit](t, portal.DecodeClientIngress, "init", cl.expect("init")), "web")
	for i := 0; i < maxPendingPerClient+8; i++ {
		// Distinct payloads: the phoenix client drops exact duplicates
		// that are still queued.
		cl.push(portal.EventRequestAuthorization, portal.RequestAuthorization{ResourceID: web, ConnectedGatewayIDs: []string{strconv.Itoa(i)}})
	}
	// The socket is served in order: once this is answered, every request
	// before it was handled.
	if _, err := cl.request("sync", map[string]int{}); err == nil {
		t.Fatal("unknown event answered ok")
	}
	if s := p.Status(); s.PendingAuthorizations != maxPendingPerClient {
		t.Fatalf("pending %d, want %d", s.PendingAuthorizations, maxPendingPerClient)
	}
	waitUntil(t, "create_authorization pushes", func() bool { return gw.count("create_authorization") == maxPendingPerClient })
}

func TestMalformedPayloadsAreRefusedNotFatal(t *testing.T) {
	p := startPortal(t, Options{Config: testConfig(t)})
	gw := connectDevice(t, p, portal.TopicGateway, gwTokenHQ, "gw-1")
	gw.expect("init")
	cl := connectDevice(t, p, portal.TopicClient, aliceToken, "laptop-1")
	cl.expect("init")
	bad := []any{[]int{1}, "str", 42, map[string]any{"ref": 5, "client_ids": "x", "candidates": 1, "resource_id": []int{}, "gateway_id": 1, "iceless": "yes"}}
	for _, ev := range []string{portal.EventAuthorizationCreated, portal.EventBroadcastIceCandidates, portal.EventSetSnownetCapabilities} {
		for _, b := range bad {
			if _, err := gw.request(ev, b); err == nil || !strings.Contains(err.Error(), "invalid_payload") {
				t.Fatalf("gateway %s %v: %v", ev, b, err)
			}
		}
	}
	for _, ev := range []string{portal.EventRequestAuthorization, portal.EventNewGatewayIceCandidates, portal.EventSetSnownetCapabilities} {
		for _, b := range bad {
			if _, err := cl.request(ev, b); err == nil || !strings.Contains(err.Error(), "invalid_payload") {
				t.Fatalf("client %s %v: %v", ev, b, err)
			}
		}
	}
	// Both stay joined and served.
	gw.push(portal.EventNoRelays, portal.Empty{})
	gw.expect("relays_presence")
	cl.push(portal.EventNoRelays, portal.Empty{})
	cl.expect("relays_presence")
	if s := p.Status(); s.Gateways != 1 || s.Clients != 1 {
		t.Fatalf("%+v", s)
	}
}
