package p2pcontrol

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

const rid = "00000000-0000-0000-0000-000000000065" // Firezone's test ResourceId::from_u128(101)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ipv6Header is the fixed part every control packet starts with: version 6,
// payload length, next header 0xFF, hop limit 0, src = dst = ::.
func ipv6Header(plen string) string {
	return "60000000 " + plen + " ff 00" + strings.Repeat("00", 32)
}

func TestGoodbyeGolden(t *testing.T) {
	want := mustHex(t, ipv6Header("0008")+"02 00 00 00 00 00 00 00")
	got := AppendGoodbye(nil)
	if !bytes.Equal(got, want) {
		t.Fatalf("goodbye\n got %x\nwant %x", got, want)
	}
	m, err := Decode(got)
	if err != nil || m.Event != EventGoodbye || m.AssignedIPs != nil || m.DomainStatus != nil {
		t.Errorf("Decode: %+v %v", m, err)
	}
	// Appends, does not overwrite.
	if got := AppendGoodbye([]byte{1, 2}); len(got) != 50 || got[0] != 1 || got[2] != 0x60 {
		t.Errorf("append: %x", got)
	}
}

func TestAssignedIPsGolden(t *testing.T) {
	payload := `{"resource":"00000000-0000-0000-0000-000000000065","domain":"example.com","proxy_ips":["100.96.0.1","100.96.0.2","100.96.0.3","100.96.0.4","fd00:2021:1111:8000::1","fd00:2021:1111:8000::2","fd00:2021:1111:8000::3","fd00:2021:1111:8000::4"]}`
	want := append(mustHex(t, ipv6Header(hex.EncodeToString([]byte{0, byte(8 + len(payload))}))+"00 00 00 00 00 00 00 00"), payload...)
	m := AssignedIPs{Resource: rid, Domain: "example.com.", ProxyIPs: proxyIPs(8)}
	got, err := AppendAssignedIPs(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("assigned_ips\n got %q\nwant %q", got, want)
	}
	dec, err := Decode(got)
	if err != nil || dec.Event != EventAssignedIPs || dec.AssignedIPs == nil {
		t.Fatalf("Decode: %+v %v", dec, err)
	}
	a := dec.AssignedIPs
	if a.Resource != rid || a.Domain != "example.com" || len(a.ProxyIPs) != 8 || a.ProxyIPs[7] != m.ProxyIPs[7] {
		t.Errorf("round trip: %+v", a)
	}
}

func TestDomainStatusGolden(t *testing.T) {
	for _, st := range []NATStatus{StatusActive, StatusInactive} {
		payload := `{"resource":"00000000-0000-0000-0000-000000000065","domain":"example.com","status":"` + st.String() + `"}`
		want := append(mustHex(t, ipv6Header(hex.EncodeToString([]byte{0, byte(8 + len(payload))}))+"01 00 00 00 00 00 00 00"), payload...)
		got, err := AppendDomainStatus(nil, DomainStatus{Resource: strings.ToUpper(rid), Domain: "example.com", Status: st})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("domain_status\n got %q\nwant %q", got, want)
		}
		dec, err := Decode(got)
		if err != nil || dec.DomainStatus == nil || *dec.DomainStatus != (DomainStatus{Resource: rid, Domain: "example.com", Status: st}) {
			t.Errorf("Decode: %+v %v", dec, err)
		}
	}
}

func TestDomainStatusUnknownIsInactive(t *testing.T) {
	// Firezone's domain_status_ignored_unknown_nat_status payload.
	payload := []byte(`{"resource":"00000000-0000-0000-0000-000000000065","domain":"example.com","status":"what_is_this"}`)
	pkt, _ := AppendPacket(nil, EventDomainStatus, payload)
	m, err := Decode(pkt)
	if err != nil || m.DomainStatus.Status != StatusInactive || m.DomainStatus.Resource != rid {
		t.Errorf("%+v %v", m, err)
	}
}

func TestMaxSize(t *testing.T) {
	// Firezone's longest case: a 253-byte name and 8 IPs fits easily.
	label := strings.Repeat("a", 49)
	domain := strings.Join([]string{label, label, label, label, label, "com"}, ".")
	if len(domain) != 253 {
		t.Fatalf("len %d", len(domain))
	}
	ips := []netip.Addr{}
	for range 4 {
		ips = append(ips, netip.MustParseAddr("127.0.0.1"))
	}
	for range 4 {
		ips = append(ips, netip.MustParseAddr("::1"))
	}
	pkt, err := AppendAssignedIPs(nil, AssignedIPs{Resource: "00000000-0000-0000-0000-000000000064", Domain: domain, ProxyIPs: ips})
	if err != nil {
		t.Fatal(err)
	}
	if payload := len(pkt) - IPv6HeaderLen - HeaderLen; payload != 402 {
		t.Errorf("payload %d bytes, Firezone measures 402", payload)
	}
	if _, err := AppendPacket(nil, EventGoodbye, make([]byte, MaxPayloadSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversize: %v", err)
	}
	if pkt, err := AppendPacket(nil, 9, make([]byte, MaxPayloadSize)); err != nil || len(pkt) != MaxPacketSize {
		t.Errorf("max size: %d %v", len(pkt), err)
	}
}

func proxyIPs(n int) []netip.Addr {
	out := []netip.Addr{}
	for i := 1; i <= 4; i++ {
		out = append(out, netip.AddrFrom4([4]byte{100, 96, 0, byte(i)}))
	}
	for i := 1; i <= 4; i++ {
		out = append(out, netip.MustParseAddr("fd00:2021:1111:8000::"+string(rune('0'+i))))
	}
	return out[:n]
}

func TestEncodeRejects(t *testing.T) {
	good := AssignedIPs{Resource: rid, Domain: "a.example.com", ProxyIPs: proxyIPs(4)}
	bad := map[string]AssignedIPs{
		"not uuid":   {Resource: "r1", Domain: "a.example.com", ProxyIPs: proxyIPs(4)},
		"uuid chars": {Resource: "0000000g-0000-0000-0000-000000000065", Domain: "a.example.com", ProxyIPs: proxyIPs(4)},
		"no domain":  {Resource: rid, ProxyIPs: proxyIPs(4)},
		"bad domain": {Resource: rid, Domain: "a..b", ProxyIPs: proxyIPs(4)},
		"3 ips":      {Resource: rid, Domain: "a.example.com", ProxyIPs: proxyIPs(3)},
		"zero ip":    {Resource: rid, Domain: "a.example.com", ProxyIPs: []netip.Addr{{}, {}, {}, {}}},
		"zoned ip":   {Resource: rid, Domain: "a.example.com", ProxyIPs: append(proxyIPs(3), netip.MustParseAddr("fe80::1%eth0"))},
	}
	for name, m := range bad {
		if out, err := AppendAssignedIPs([]byte{7}, m); err == nil || len(out) != 1 {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}
	if _, err := AppendAssignedIPs(nil, good); err != nil {
		t.Error(err)
	}
	if _, err := AppendDomainStatus(nil, DomainStatus{Resource: "x", Domain: "a.com"}); err == nil {
		t.Error("domain_status with bad resource accepted")
	}
}

func TestDecodeRejects(t *testing.T) {
	pkt := func(ev EventType, payload string) []byte {
		b, _ := AppendPacket(nil, ev, []byte(payload))
		return b
	}
	good := pkt(EventAssignedIPs, `{"resource":"`+rid+`","domain":"a.com","proxy_ips":["100.96.0.1"],"extra":1}`)
	if m, err := Decode(good); err != nil || len(m.AssignedIPs.ProxyIPs) != 1 {
		t.Fatalf("unknown fields must be ignored: %v", err)
	}
	// Trailing bytes beyond the IPv6 payload length are ignored.
	if _, err := Decode(append(append([]byte(nil), good...), 0, 0)); err != nil {
		t.Errorf("trailing bytes: %v", err)
	}
	if m, err := Decode(pkt(7, `whatever`)); err != nil || m.Event != 7 {
		t.Errorf("unknown event: %+v %v", m, err)
	}

	malformed := map[string][]byte{
		"not json":        pkt(EventAssignedIPs, `{`),
		"trailing json":   pkt(EventAssignedIPs, `{"resource":"`+rid+`","domain":"a.com","proxy_ips":[]}{}`),
		"missing ips":     pkt(EventAssignedIPs, `{"resource":"`+rid+`","domain":"a.com"}`),
		"bad ip":          pkt(EventAssignedIPs, `{"resource":"`+rid+`","domain":"a.com","proxy_ips":["1.2.3"]}`),
		"bad resource":    pkt(EventAssignedIPs, `{"resource":"x","domain":"a.com","proxy_ips":[]}`),
		"bad domain":      pkt(EventDomainStatus, `{"resource":"`+rid+`","domain":"","status":"Active"}`),
		"missing status":  pkt(EventDomainStatus, `{"resource":"`+rid+`","domain":"a.com"}`),
		"status not text": pkt(EventDomainStatus, `{"resource":"`+rid+`","domain":"a.com","status":1}`),
		"short payload":   func() []byte { b := pkt(EventGoodbye, ""); b[5] = 4; return b[:44] }(),
		"length overruns": func() []byte { b := pkt(EventGoodbye, ""); b[5] = 20; return b }(),
	}
	for name, b := range malformed {
		if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}

	notControl := map[string][]byte{
		"short":      good[:39],
		"ipv4":       func() []byte { b := append([]byte(nil), good...); b[0] = 0x45; return b }(),
		"udp":        func() []byte { b := append([]byte(nil), good...); b[6] = 17; return b }(),
		"src not ::": func() []byte { b := append([]byte(nil), good...); b[23] = 1; return b }(),
		"dst not ::": func() []byte { b := append([]byte(nil), good...); b[39] = 1; return b }(),
	}
	for name, b := range notControl {
		if IsControlPacket(b) {
			t.Errorf("%s: IsControlPacket", name)
		}
		if _, err := Decode(b); !errors.Is(err, ErrNotControl) {
			t.Errorf("%s: %v, want ErrNotControl", name, err)
		}
	}
	if _, err := DecodeDomainStatus([]byte(`[]`)); !errors.Is(err, ErrMalformed) {
		t.Errorf("array: %v", err)
	}
}

func TestIsControlPacketAllocs(t *testing.T) {
	p := AppendGoodbye(nil)
	if n := testing.AllocsPerRun(100, func() { IsControlPacket(p); _, _, _ = Parse(p) }); n != 0 {
		t.Errorf("%v allocs", n)
	}
}
