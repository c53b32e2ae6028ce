package snownet

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/pion/stun/v2"
)

// realmConn wraps the socket pion's TURN client reads from so that the
// realm the portal gave for a relay is enforced (Firezone refuses any other
// realm): pion's client adopts whatever REALM the server's 401 carries, so
// a 401 naming another realm is dropped here and the allocation fails
// instead of authenticating against a realm we were not told about.
type realmConn struct {
	net.PacketConn
	expected func(netip.AddrPort) string // "" accepts any realm
	dropped  *atomic.Uint64
}

func (c *realmConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil || !c.refuse(p[:n], addr) {
			return n, addr, err
		}
		c.dropped.Add(1)
	}
}

// refuse reports whether p is a STUN error response from a relay whose
// REALM differs from the one configured for that relay.
func (c *realmConn) refuse(p []byte, addr net.Addr) bool {
	if !isSTUN(p) {
		return false
	}
	const errorClass = 0x0110 // C1 and C0 bits of the message type
	if binary.BigEndian.Uint16(p[0:2])&errorClass != errorClass {
		return false
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return false
	}
	ap := ua.AddrPort()
	want := c.expected(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	if want == "" {
		return false
	}
	m := &stun.Message{Raw: append([]byte(nil), p...)}
	if err := m.Decode(); err != nil {
		return false
	}
	realm, err := m.Get(stun.AttrRealm)
	if err != nil {
		return false // no REALM: nothing to disagree with
	}
	return string(realm) != want
}
