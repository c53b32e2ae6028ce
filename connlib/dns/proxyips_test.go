package dns

import (
	"errors"
	"net/netip"
	"testing"
)

func TestProxyRangesAsReference(t *testing.T) {
	// Ranges from reference §1.4 "Special IPs".
	for p, want := range map[netip.Prefix]string{
		ProxyRangeV4:    "100.96.0.0/11",
		ProxyRangeV6:    "fd00:2021:1111:8000::/107",
		SentinelRangeV4: "100.100.111.0/24",
		SentinelRangeV6: "fd00:2021:1111:8000:100:100:111:0/120",
	} {
		if p.String() != want {
			t.Errorf("%v, want %s", p, want)
		}
	}
	// The v4 sentinels sit inside the v4 proxy range, the v6 ones do not.
	if !ProxyRangeV4.Overlaps(SentinelRangeV4) || ProxyRangeV6.Overlaps(SentinelRangeV6) {
		t.Error("range layout changed; revisit the allocator's exclusions")
	}
	for _, tc := range []struct {
		ip          string
		proxy, sent bool
	}{
		{"100.96.0.1", true, false}, {"100.127.255.254", true, false}, {"100.100.111.1", false, true},
		{"100.95.255.255", false, false}, {"fd00:2021:1111:8000::5", true, false},
		{"fd00:2021:1111:8000:100:100:111:1", false, true}, {"::ffff:100.96.0.7", true, false},
	} {
		a := netip.MustParseAddr(tc.ip)
		if IsProxyIP(a) != tc.proxy || IsSentinel(a) != tc.sent {
			t.Errorf("%s: IsProxyIP=%v IsSentinel=%v", tc.ip, IsProxyIP(a), IsSentinel(a))
		}
	}
}

func TestAllocatorFirstAddresses(t *testing.T) {
	a := newProxyAllocator(ProxyRangeV4, ProxyRangeV6)
	p, err := a.allocate()
	if err != nil {
		t.Fatal(err)
	}
	want := ProxyIPs{
		V4: [4]netip.Addr{netip.MustParseAddr("100.96.0.1"), netip.MustParseAddr("100.96.0.2"), netip.MustParseAddr("100.96.0.3"), netip.MustParseAddr("100.96.0.4")},
		V6: [4]netip.Addr{netip.MustParseAddr("fd00:2021:1111:8000::1"), netip.MustParseAddr("fd00:2021:1111:8000::2"), netip.MustParseAddr("fd00:2021:1111:8000::3"), netip.MustParseAddr("fd00:2021:1111:8000::4")},
	}
	if p != want {
		t.Errorf("first allocation %v, want %v", p, want)
	}
	if got := p.AppendForStack(nil, IPStackIPv6Only); len(got) != 4 || got[0] != want.V6[0] {
		t.Errorf("ipv6_only %v", got)
	}
	if got := p.AppendForStack(nil, IPStackDual); len(got) != 8 || got[0] != want.V4[0] || got[4] != want.V6[0] {
		t.Errorf("dual %v", got)
	}
}

// TestAllocatorWholeRange walks the entire IPv4 proxy range: every address
// is handed out at most once, never a sentinel, never the first or last one,
// and the capacity is what the range allows.
func TestAllocatorWholeRange(t *testing.T) {
	a := newProxyAllocator(ProxyRangeV4, ProxyRangeV6)
	size := 1 << 21
	seen := make([]bool, size)
	seen6 := make([]bool, size)
	names := 0
	for {
		p, err := a.allocate()
		if errors.Is(err, ErrProxyIPsExhausted) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names++
		for _, ip := range p.V4 {
			if !ProxyRangeV4.Contains(ip) || SentinelRangeV4.Contains(ip) {
				t.Fatalf("bad v4 %v", ip)
			}
			off := hostOffset(ProxyRangeV4.Addr(), ip)
			if off == 0 || off == uint64(size-1) || seen[off] {
				t.Fatalf("v4 %v reused or reserved", ip)
			}
			seen[off] = true
		}
		for _, ip := range p.V6 {
			if !ProxyRangeV6.Contains(ip) {
				t.Fatalf("bad v6 %v", ip)
			}
			off := hostOffset(ProxyRangeV6.Addr(), ip)
			if off == 0 || seen6[off] {
				t.Fatalf("v6 %v reused or reserved", ip)
			}
			seen6[off] = true
		}
	}
	usable := size - 2 - 256
	if names != usable/4 {
		t.Errorf("capacity %d names, want %d", names, usable/4)
	}
	// Exhaustion is sticky and consumes nothing.
	if _, err := a.allocate(); !errors.Is(err, ErrProxyIPsExhausted) {
		t.Error(err)
	}
}

func TestAllocatorSkipsSentinelsAcrossBoundary(t *testing.T) {
	a := newProxyAllocator(ProxyRangeV4, ProxyRangeV6)
	// Place the cursor two addresses before the sentinel /24.
	a.v4.next = hostOffset(ProxyRangeV4.Addr(), netip.MustParseAddr("100.100.110.254"))
	p, err := a.allocate()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"100.100.110.254", "100.100.110.255", "100.100.112.0", "100.100.112.1"}
	for i, w := range want {
		if p.V4[i].String() != w {
			t.Errorf("V4[%d] = %v, want %s", i, p.V4[i], w)
		}
	}
}
