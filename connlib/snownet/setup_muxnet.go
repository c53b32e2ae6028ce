package snownet

import (
	"net"
	"net/netip"

	"github.com/pion/transport/v3"
)

// muxNet is the transport.Net the ICE mux on the wildcard socket lists its
// addresses with. pion's UDP mux gathers a host candidate per listed
// address and, with UDPMuxSrflx, a server-reflexive candidate per listed
// address too: identical srflx candidates that differ only in their related
// address, all reading from one muxed conn. A received STUN message goes to
// whichever of those candidates' readers takes it, so the controlled agent
// saw a nomination on one "pair" and the success of its triggered check on
// another and never selected a pair, while the controlling side had
// selected and stopped nominating: the rare set-up failure of
// examples/bench (the gateway listed 127.0.0.1, two fe80:: addresses and
// its two LAN addresses, five srflx duplicates). Loopback and link-local
// addresses are never signalled (connection.iceCandidate drops them), so
// they are left out here, which removes most duplicates; pion also only
// includes loopback because the mux asks for it. If nothing else is left
// (a host with loopback only), the full list is kept.
type muxNet struct {
	transport.Net
}

// usableHostAddr reports whether a is worth a host candidate.
func usableHostAddr(a net.Addr) bool {
	var ip net.IP
	switch v := a.(type) {
	case *net.IPNet:
		ip = v.IP
	case *net.IPAddr:
		ip = v.IP
	default:
		return true // unknown kind: let pion decide
	}
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	addr = addr.Unmap()
	return !addr.IsLoopback() && !addr.IsLinkLocalUnicast() && !addr.IsUnspecified()
}

// Interfaces lists the interfaces with their usable addresses only.
func (m muxNet) Interfaces() ([]*transport.Interface, error) {
	ifs, err := m.Net.Interfaces()
	if err != nil {
		return nil, err
	}
	out := make([]*transport.Interface, 0, len(ifs))
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		var f *transport.Interface
		for _, a := range addrs {
			if !usableHostAddr(a) {
				continue
			}
			if f == nil {
				f = transport.NewInterface(ifc.Interface)
			}
			f.AddAddress(a)
		}
		if f != nil {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return ifs, nil
	}
	return out, nil
}
