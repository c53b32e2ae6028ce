package snownet

import (
	"encoding/binary"
	"net"

	"github.com/pion/ice/v3"
	"go.uber.org/zap"
)

// pion's UDP mux routes STUN to agents by the local ufrag alone, but
// Firezone's ufrags are 4 base32 characters (20 bits): with 1000 clients on
// a gateway two of them share a local ufrag with a probability of about
// 40%. So a Node keeps a small pool of muxes over the same shared socket
// and puts each agent on a mux where its local ufrag is free; usually there
// is one. Incoming STUN is routed by the Bind: requests by their USERNAME
// ("local:remote" ufrags), everything else (responses, which carry no
// USERNAME) to every mux, where pion ignores transaction IDs it did not
// send. The same mechanism lets a connection be re-created with the same
// credentials while the old agent is still closing.

// muxSlot is one pion mux over its own STUNConn on the shared socket.
type muxSlot struct {
	sc     *STUNConn
	mux    *ice.UniversalUDPMuxDefault
	ufrags map[string]int // local ufrags of live and closing agents
}

// stunRoutes is the Bind's routing snapshot (copy on write).
type stunRoutes struct {
	all    []*STUNConn
	byPair map[string]*STUNConn // "localUfrag:remoteUfrag"; nil with one mux
}

func (n *Node) newMuxSlot() (*muxSlot, error) {
	port := n.bind.Port()
	if port == 0 {
		return nil, errBindNotOpen
	}
	ip := net.IPv6unspecified
	if n.cfg.HostIP.IsValid() {
		ip = n.cfg.HostIP.Unmap().AsSlice()
	}
	sc := newSTUNConn(n.bind, &net.UDPAddr{IP: ip, Port: int(port)})
	mux := ice.NewUniversalUDPMuxDefault(ice.UniversalUDPMuxParams{
		Logger:  pionLoggerFactory{n.log}.NewLogger("udpmux"),
		UDPConn: sc,
		Net:     muxNet{n.net},
	})
	return &muxSlot{sc: sc, mux: mux, ufrags: make(map[string]int)}, nil
}

func (s *muxSlot) close() {
	_ = s.mux.Close()
	_ = s.sc.Close()
}

// acquireMuxLocked returns a mux on which ufrag is free, creating one if
// needed, and reserves the ufrag on it.
func (n *Node) acquireMuxLocked(ufrag string) (*muxSlot, error) {
	for _, s := range n.muxes {
		if s.ufrags[ufrag] == 0 {
			s.ufrags[ufrag]++
			return s, nil
		}
	}
	s, err := n.newMuxSlot()
	if err != nil {
		return nil, err
	}
	n.log.Debug("local ICE ufrag already in use: extra mux", zap.Int("muxes", len(n.muxes)+1))
	n.muxes = append(n.muxes, s)
	s.ufrags[ufrag]++
	return s, nil
}

// releaseMuxLocked frees ufrag on s once its agent has closed; an extra
// mux left empty is closed.
func (n *Node) releaseMuxLocked(s *muxSlot, ufrag string) {
	if s.ufrags[ufrag]--; s.ufrags[ufrag] <= 0 {
		delete(s.ufrags, ufrag)
	}
	if len(s.ufrags) > 0 || len(n.muxes) == 0 || n.muxes[0] == s {
		return
	}
	for i, m := range n.muxes {
		if m == s {
			n.muxes = append(n.muxes[:i], n.muxes[i+1:]...)
			s.close()
			n.updateRoutesLocked()
			return
		}
	}
}

// updateRoutesLocked publishes the STUN routing snapshot to the Bind.
func (n *Node) updateRoutesLocked() {
	rt := &stunRoutes{all: make([]*STUNConn, 0, len(n.muxes))}
	for _, s := range n.muxes {
		rt.all = append(rt.all, s.sc)
	}
	if len(rt.all) > 1 {
		rt.byPair = make(map[string]*STUNConn, len(n.conns))
		for _, c := range n.conns {
			rt.byPair[c.params.Local.Ufrag+":"+c.params.Remote.Ufrag] = c.slot.sc
		}
	}
	n.bind.stun.Store(rt)
}

// stunUsername returns the USERNAME attribute of STUN message p (nil if
// absent or malformed). It does not allocate.
func stunUsername(p []byte) []byte {
	const attrUsername = 0x0006
	end := stunHeaderSize + int(binary.BigEndian.Uint16(p[2:4]))
	if end > len(p) {
		return nil
	}
	for off := stunHeaderSize; off+4 <= end; {
		typ := binary.BigEndian.Uint16(p[off : off+2])
		l := int(binary.BigEndian.Uint16(p[off+2 : off+4]))
		if off+4+l > end {
			return nil
		}
		if typ == attrUsername {
			return p[off+4 : off+4+l]
		}
		off += 4 + (l+3)&^3
	}
	return nil
}

// isSTUNRequest reports whether STUN message p is a request (class 0b00).
func isSTUNRequest(p []byte) bool {
	return binary.BigEndian.Uint16(p[0:2])&0x0110 == 0
}
