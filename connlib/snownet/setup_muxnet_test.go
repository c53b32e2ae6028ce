package snownet

import (
	"net"
	"sort"
	"testing"

	"github.com/pion/transport/v3"
)

// fakeIfNet lists fixed interfaces; every other transport.Net method is
// unused (nil embedded interface).
type fakeIfNet struct {
	transport.Net
	ifs []*transport.Interface
}

func (f fakeIfNet) Interfaces() ([]*transport.Interface, error) { return f.ifs, nil }

func fakeIface(name string, cidrs ...string) *transport.Interface {
	ifc := transport.NewInterface(net.Interface{Name: name, Flags: net.FlagUp})
	for _, c := range cidrs {
		ip, n, err := net.ParseCIDR(c)
		if err != nil {
			panic(err)
		}
		n.IP = ip
		ifc.AddAddress(n)
	}
	return ifc
}

func listAddrs(t *testing.T, n transport.Net) []string {
	t.Helper()
	ifs, err := n.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ifc := range ifs {
		as, _ := ifc.Addrs()
		for _, a := range as {
			out = append(out, ifc.Name+" "+a.String())
		}
	}
	sort.Strings(out)
	return out
}

// TestMuxNetDropsLoopbackAndLinkLocal: the wildcard mux lists only
// addresses a peer could use, so pion does not gather a srflx duplicate per
// loopback/link-local address (see muxNet).
func TestMuxNetDropsLoopbackAndLinkLocal(t *testing.T) {
	inner := fakeIfNet{ifs: []*transport.Interface{
		fakeIface("lo", "127.0.0.1/8", "::1/128"),
		fakeIface("eth0", "172.31.0.100/24", "fe80::1/64", "fd00::100/64"),
		fakeIface("eth1", "10.20.0.1/24", "fe80::2/64"),
		fakeIface("dummy", "fe80::3/64"),
	}}
	got := listAddrs(t, muxNet{inner})
	want := []string{"eth0 172.31.0.100/24", "eth0 fd00::100/64", "eth1 10.20.0.1/24"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	// Nothing usable: the full list stays (srflx still needs an address).
	only := fakeIfNet{ifs: []*transport.Interface{fakeIface("lo", "127.0.0.1/8")}}
	if got := listAddrs(t, muxNet{only}); len(got) != 1 || got[0] != "lo 127.0.0.1/8" {
		t.Fatalf("loopback-only host: %v", got)
	}
}
