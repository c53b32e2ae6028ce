package portal

import (
	"encoding/json"
	"testing"
)

func TestIPAcceptsPrefix(t *testing.T) {
	m, err := DecodeClientIngress(EventDevicePoolDomainResolved,
		[]byte(`{"resource_id":"r","domain":"d","ipv4":"100.64.0.42/32","ipv6":"fd00:2021:1111::2a/128"}`))
	if err != nil {
		t.Fatal(err)
	}
	p := m.Payload.(*DevicePoolDomainResolved)
	if p.IPv4 != MustIP("100.64.0.42") || p.IPv6 != MustIP("fd00:2021:1111::2a") {
		t.Fatalf("got %v %v", p.IPv4, p.IPv6)
	}
	out, _ := json.Marshal(p)
	jsonEqual(t, []byte(`{"resource_id":"r","domain":"d","ipv4":"100.64.0.42","ipv6":"fd00:2021:1111::2a"}`), out)

	for _, bad := range []string{`"100.64.0.42/33"`, `"x"`, `5`, `"1.2.3.4/"`} {
		var ip IP
		if err := json.Unmarshal([]byte(bad), &ip); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
	var ip IP
	if err := json.Unmarshal([]byte(`null`), &ip); err != nil || ip.IsValid() {
		t.Errorf("null: %v %v", ip, err)
	}
}

func TestClientInitDropsUnknownResourceTypesAndBadRelays(t *testing.T) {
	in := `{"interface":{"ipv4":"100.72.112.111","ipv6":"fd00:2021:1111::13:efb9","upstream_do53":[],"upstream_doh":[]},
	"resources":[{"id":"a","type":"hologram","address":"x"},
	             {"id":"b","type":"cidr","address":"10.0.0.0/8","name":"Ten","filters":[],"gateway_groups":[{"id":"s1","name":"HQ"}]},
	             {"id":"c","type":"internet","sites":[]},
	             "not even an object"],
	"relays":[{"id":"r1","type":"stun","addr":"1.2.3.4:3478"},
	          {"id":"r2","type":"turn","addr":"nonsense","username":"u","password":"p","expires_at":1},
	          {"id":"r3","type":"turn","addr":"127.0.0.1:3478","username":"u","password":"p","expires_at":1}]}`
	m, err := DecodeClientIngress(EventInit, []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	init := m.Payload.(*ClientInit)
	if len(init.Resources) != 2 || init.Resources[0].ID != "b" || init.Resources[1].ID != "c" {
		t.Fatalf("resources %+v", init.Resources)
	}
	if s := init.Resources[0].Sites; len(s) != 1 || s[0].ID != "s1" {
		t.Fatalf("gateway_groups not accepted as sites: %+v", s)
	}
	if init.Resources[1].Name != DefaultInternetResourceName {
		t.Fatalf("internet name %q", init.Resources[1].Name)
	}
	if len(init.Relays) != 1 || init.Relays[0].ID != "r3" {
		t.Fatalf("relays %+v", init.Relays)
	}
	if init.FlowLogs != nil || init.Authorizations != nil {
		t.Fatalf("missing optional fields not left empty")
	}
}

func TestMissingOptionalFields(t *testing.T) {
	m, err := DecodeGatewayIngress(EventInit, []byte(`{"interface":{"ipv4":"100.64.0.1","ipv6":"fd00:2021:1111::1"}}`))
	if err != nil {
		t.Fatal(err)
	}
	gi := m.Payload.(*GatewayInit)
	if gi.Interface.IPv4 != MustIP("100.64.0.1") || gi.AccountSlug != "" || gi.Relays != nil || gi.FlowLogs != nil {
		t.Fatalf("%+v", gi)
	}
	m, err = DecodeGatewayIngress(EventCreateAuthorization, []byte(`{"ref":"x","resource":{"id":"r","type":"dns","address":"*.a"},"client":{"id":"c","public_key":"k"}}`))
	if err != nil {
		t.Fatal(err)
	}
	ca := m.Payload.(*CreateAuthorization)
	if ca.UseIceless || ca.ExpiresAt != nil || ca.Subject != nil || ca.Resource.Filters != nil {
		t.Fatalf("%+v", ca)
	}
	// null payload for an object event is an empty object.
	if m, err := DecodeGatewayEgress(EventNoRelays, []byte("null")); err != nil || m.Payload == nil {
		t.Fatalf("no_relays null: %v", err)
	}
	if _, err := DecodeGatewayEgress(EventNoRelays, nil); err != nil {
		t.Fatalf("no_relays empty: %v", err)
	}
}

func TestLegacyGatewayGroupID(t *testing.T) {
	m, err := DecodeClientIngress(EventAuthorizationCreated, []byte(`{"resource_id":"r","gateway_id":"g","gateway_group_id":"s9"}`))
	if err != nil {
		t.Fatal(err)
	}
	if a := m.Payload.(*AuthorizationCreated); a.SiteID != "s9" || a.GatewayID != "g" {
		t.Fatalf("%+v", a)
	}
}

func TestResourceDeletedBareString(t *testing.T) {
	m, err := DecodeClientIngress(EventResourceDeleted, []byte(`"733e0000-0000-4000-8000-000000000002"`))
	if err != nil {
		t.Fatal(err)
	}
	if *m.Payload.(*ResourceDeleted) != "733e0000-0000-4000-8000-000000000002" {
		t.Fatalf("%v", m.Payload)
	}
	if b, _ := json.Marshal(ResourceDeleted("x")); string(b) != `"x"` {
		t.Fatalf("encode %s", b)
	}
}

func TestFilterBounds(t *testing.T) {
	var fs []Filter
	if err := json.Unmarshal([]byte(`[{"protocol":"tcp"},{"protocol":"udp","port_range_start":53},{"protocol":"icmp"},{"protocol":"sctp"}]`), &fs); err != nil {
		t.Fatal(err)
	}
	want := []Filter{{ProtocolTCP, 0, 65535}, {ProtocolUDP, 53, 65535}, {ProtocolICMP, 0, 0}, {"sctp", 0, 65535}}
	for i := range want {
		if fs[i] != want[i] {
			t.Errorf("filter %d: %+v want %+v", i, fs[i], want[i])
		}
	}
}

func TestClientResourceUnknownTypeEncodeFails(t *testing.T) {
	if _, err := json.Marshal(ClientResource{ID: "x", Type: "hologram"}); err == nil {
		t.Fatal("encoded an unknown type")
	}
}
