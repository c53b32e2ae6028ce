package dns

import (
	"errors"
	"net/netip"
	"testing"
)

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func TestEffectiveUpstreams(t *testing.T) {
	do53 := func(s string) Upstream { return Upstream{Do53: netip.MustParseAddrPort(s)} }
	tests := []struct {
		name   string
		do53   []netip.Addr
		doh    []string
		system []netip.Addr
		want   []Upstream
	}{
		{"portal do53 wins", addrs("1.0.0.1"), []string{"https://dns.google/dns-query"}, addrs("1.1.1.1"), []Upstream{do53("1.0.0.1:53")}},
		{"then doh", nil, []string{"https://dns.quad9.net/dns-query", "https://dns.quad9.net/dns-query"}, addrs("1.1.1.1"), []Upstream{{DoH: "https://dns.quad9.net/dns-query"}}},
		{"then system", nil, nil, addrs("1.1.1.1", "1.0.0.1", "1.1.1.1", "2606:4700:4700::1111"),
			[]Upstream{do53("1.1.1.1:53"), do53("1.0.0.1:53"), do53("[2606:4700:4700::1111]:53")}},
		{"sentinels filtered", addrs("100.100.111.1"), nil, addrs("1.1.1.1", "fd00:2021:1111:8000:100:100:111:2"), []Upstream{do53("1.1.1.1:53")}},
		{"mapped v4 unmapped", nil, nil, addrs("::ffff:9.9.9.9"), []Upstream{do53("9.9.9.9:53")}},
		{"nothing", nil, nil, addrs("0.0.0.0"), nil},
	}
	for _, tc := range tests {
		got := EffectiveUpstreams(tc.do53, tc.doh, tc.system)
		if len(got) != len(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: [%d] %v, want %v", tc.name, i, got[i], tc.want[i])
			}
		}
	}
}

func TestSentinelMap(t *testing.T) {
	ups := []Upstream{
		{Do53: netip.MustParseAddrPort("1.1.1.1:53")},
		{Do53: netip.MustParseAddrPort("[2606:4700:4700::1111]:53")},
		{Do53: netip.MustParseAddrPort("1.0.0.1:53")},
		{DoH: "https://cloudflare-dns.com/dns-query"},
		{Do53: netip.MustParseAddrPort("1.1.1.1:53")}, // duplicate
		{Do53: netip.MustParseAddrPort("[2606:4700:4700::1001]:53")},
	}
	m, err := NewSentinelMap(ups)
	if err != nil {
		t.Fatal(err)
	}
	want := addrs("100.100.111.1", "fd00:2021:1111:8000:100:100:111:1", "100.100.111.2", "100.100.111.3", "fd00:2021:1111:8000:100:100:111:2")
	got := m.Sentinels()
	if len(got) != len(want) {
		t.Fatalf("sentinels %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("sentinel %d = %v, want %v", i, got[i], want[i])
		}
		if !IsSentinel(got[i]) {
			t.Errorf("%v outside the sentinel ranges", got[i])
		}
		u, ok := m.Upstream(got[i])
		if !ok {
			t.Fatalf("no upstream for %v", got[i])
		}
		if s, ok := m.Sentinel(u); !ok || s != got[i] {
			t.Errorf("round trip %v → %v → %v", got[i], u, s)
		}
		if u != m.Upstreams()[i] {
			t.Errorf("Upstreams order")
		}
	}
	if u, ok := m.Upstream(netip.MustParseAddr("::ffff:100.100.111.2")); !ok || u.Do53.String() != "1.0.0.1:53" {
		t.Errorf("mapped sentinel lookup: %v %v", u, ok)
	}
	if _, ok := m.Upstream(netip.MustParseAddr("100.100.111.9")); ok {
		t.Error("unassigned sentinel found")
	}
	if _, ok := m.Sentinel(Upstream{DoH: "https://dns.google/dns-query"}); ok {
		t.Error("unknown upstream found")
	}
}

func TestSentinelMapLimits(t *testing.T) {
	var v4, v6 []Upstream
	for i := range 255 {
		v4 = append(v4, Upstream{Do53: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i / 256), byte(i)}), 53)})
		v6 = append(v6, Upstream{Do53: netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 15: byte(i)}), 53)})
	}
	if _, err := NewSentinelMap(v4[:254]); err != nil {
		t.Errorf("254 v4: %v", err)
	}
	if _, err := NewSentinelMap(v4); !errors.Is(err, ErrTooManyUpstreams) {
		t.Errorf("255 v4: %v", err)
	}
	if m, err := NewSentinelMap(v6); err != nil || m.Sentinels()[254].String() != "fd00:2021:1111:8000:100:100:111:ff" {
		t.Errorf("255 v6: %v", err)
	}
	extra := append(v6, Upstream{Do53: netip.MustParseAddrPort("[2001::1:1]:53")})
	if _, err := NewSentinelMap(extra); !errors.Is(err, ErrTooManyUpstreams) {
		t.Errorf("256 v6: %v", err)
	}
	if _, err := NewSentinelMap([]Upstream{{}}); err == nil {
		t.Error("empty upstream accepted")
	}
	if _, err := NewSentinelMap([]Upstream{{DoH: "x", Do53: netip.MustParseAddrPort("1.1.1.1:53")}}); err == nil {
		t.Error("upstream with both accepted")
	}
}
