package connlib

import (
	"net/netip"
	"time"

	"github.com/gozone/gozone/connlib/snownet"
)

// ClientStatus is a snapshot of a client session.
type ClientStatus struct {
	PortalConnected bool
	IPv4, IPv6      netip.Addr
	// DNS are the sentinel addresses the OS should use as resolvers.
	DNS       []netip.Addr
	Resources []ClientResourceStatus
	Gateways  []ClientGatewayStatus
	// BufferedDropped counts packets dropped while waiting for a
	// connection (queue full or waited too long).
	BufferedDropped uint64
}

// ClientResourceStatus is one resource and how it is reached.
type ClientResourceStatus struct {
	ID, Name, Type, Address string
	// GatewayID is the gateway the resource is authorized on ("" when
	// none yet).
	GatewayID string
	// Connected is true once packets for it flow to the gateway.
	Connected bool
	// Failure is why the portal last refused access ("offline",
	// "forbidden", ...), cleared when access is granted.
	Failure string
}

// ClientGatewayStatus is one gateway connection.
type ClientGatewayStatus struct {
	ID, SiteID    string
	Connected     bool
	Path          snownet.PathKind // direct or relayed
	Pair          *snownet.PairInfo
	RxBytes       uint64
	TxBytes       uint64
	LastHandshake time.Time
	Resources     []string
}

type clientStatusState struct {
	base ClientStatus
}

// Status returns the session's current state: resources, which gateway
// each uses, and per gateway the path (direct or relayed) and bytes. Safe
// to call from any goroutine at any time.
func (c *Client) Status() ClientStatus {
	c.statusMu.Lock()
	st := c.status.base
	st.Resources = append([]ClientResourceStatus(nil), st.Resources...)
	gws := append([]ClientGatewayStatus(nil), st.Gateways...)
	c.statusMu.Unlock()
	stats := c.node.Stats()
	for i := range gws {
		gws[i].Resources = append([]string(nil), gws[i].Resources...)
		for _, cs := range stats {
			if cs.Peer == gws[i].ID {
				gws[i].Path, gws[i].Pair = cs.Path, cs.Pair
				gws[i].RxBytes, gws[i].TxBytes, gws[i].LastHandshake = cs.RxBytes, cs.TxBytes, cs.LastHandshake
			}
		}
	}
	st.Gateways = gws
	st.BufferedDropped = c.pending.Dropped()
	return st
}

// updateStatus refreshes the status snapshot from the loop's state.
func (s *clientState) updateStatus() {
	st := ClientStatus{PortalConnected: s.joined, IPv4: s.ipv4, IPv6: s.ipv6}
	if s.sentinels != nil {
		st.DNS = s.sentinels.Sentinels()
	}
	for _, id := range clientSortedKeys(s.resources) {
		r := s.resources[id]
		rid, _ := clientParseID(id)
		st.Resources = append(st.Resources, ClientResourceStatus{
			ID: id, Name: r.Name, Type: r.Type, Address: r.Address,
			GatewayID: s.resGateway[id], Connected: s.ready[rid], Failure: s.failures[id],
		})
	}
	for _, gid := range clientSortedKeys(s.gateways) {
		gw := s.gateways[gid]
		st.Gateways = append(st.Gateways, ClientGatewayStatus{
			ID: gid, SiteID: gw.siteID, Connected: gw.connected, Path: gw.path,
			Resources: clientSortedKeys(gw.resources),
		})
	}
	s.c.statusMu.Lock()
	s.c.status.base = st
	s.c.statusMu.Unlock()
}
