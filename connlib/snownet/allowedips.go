package snownet

import "net/netip"

// SetAllowedIPs replaces the allowed IPs of the connection to peer without
// touching its session: the WireGuard peer is reconfigured with
// replace_allowed_ips=true, so keys, handshake state, the ICE agent and the
// path stay as they are and no candidates are re-signalled. The client
// session calls it as resources behind an already connected gateway get
// authorized (their prefixes and DNS proxy IPs join that gateway's allowed
// IPs). It returns ErrUnknownConnection when there is no connection to peer
// and ErrClosed after Close. prefixes is copied.
func (n *Node) SetAllowedIPs(peer string, prefixes []netip.Prefix) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	c := n.conns[peer]
	if c == nil {
		return ErrUnknownConnection
	}
	p := c.params
	p.AllowedIPs = append([]netip.Prefix(nil), prefixes...)
	if err := n.dev.IpcSet(peerConfig(p, false)); err != nil {
		return err
	}
	c.params.AllowedIPs = p.AllowedIPs
	return nil
}
