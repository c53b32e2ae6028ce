package snownet

import (
	"net/netip"
	"time"

	"go.uber.org/zap"
)

// A relay that restarts loses our allocation. The TURN side learns it
// within seconds (the watchdog in turn_watch.go, a REFRESH answered 437, a
// new agent's verification) and re-creates the allocation on a new
// relayed address; ICE, however, only gives up on a pair through the old
// address after its disconnected timeout (5 s of silence) plus
// DisconnectGrace, ~8.5 s in all. So when the allocation is replaced,
// every connection whose nominated pair sends from the old relayed
// address fails at once (reasonRelayLost), and the caller builds a new one
// over the fresh allocation. Connections on other relays, on direct paths,
// or whose only relay is the peer's are left to ICE: nothing tells us
// their path is gone.
//
// pion/ice v3 does not renominate, so its relay acceptance wait (2 s) is
// what lets a direct pair win over a relayed one found first. For a peer
// whose relayed connection was just lost that way, the direct pairs
// already failed to win once, so its next connection, if made within
// relayLostMemory, accepts a relayed pair after relayLostAcceptance only.
// Every other connection keeps pion's wait.

const (
	// reasonRelayLost is the Reason of EventConnectionFailed for a
	// connection failed because its relay allocation was replaced.
	reasonRelayLost = "relay allocation lost"
	// relayLostMemory: how long a lost relayed connection makes the
	// peer's next connection accept relayed pairs early.
	relayLostMemory = 30 * time.Second
	// relayLostAcceptance: the relay acceptance wait of such a connection
	// (short, not zero: a direct pair that answers at once still wins).
	relayLostAcceptance = 250 * time.Millisecond
)

// relayAllocationReplaced fails the connections whose nominated pair has
// old (our relayed address on relay, now replaced by now) as its local
// candidate. Called by the allocation (turnAlloc.onReplaced) without locks.
func (n *Node) relayAllocationReplaced(relay, old, now netip.AddrPort) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	var lost []string
	at := n.clock.Now()
	for _, c := range n.conns {
		if c.closed || !sendsFromRelayed(c.pair, old) {
			continue
		}
		c.lc.relayLost()
		lost = append(lost, c.id)
		if n.relayLost == nil {
			n.relayLost = make(map[string]time.Time)
		}
		n.relayLost[c.id] = at
	}
	n.mu.Unlock()
	n.log.Info("relay allocation replaced", zap.Stringer("relay", relay), zap.Stringer("old", old),
		zap.Stringer("new", now), zap.Strings("failing", lost))
	if len(lost) > 0 {
		n.wakeTick()
	}
}

// sendsFromRelayed reports whether the nominated pair p (nil before
// nomination) has our relayed address relayed as its local candidate. A
// pair whose remote candidate is the peer's relay is not ours to judge.
func sendsFromRelayed(p *PairInfo, relayed netip.AddrPort) bool {
	if p == nil || !p.LocalRelay {
		return false
	}
	local, ok := candidateAddrPort(p.Local)
	return ok && local == relayed
}

// relayAcceptanceLocked is the relay acceptance wait for a new connection
// to peer: relayLostAcceptance if its relayed connection was lost within
// relayLostMemory, else nil (pion's default). The caller holds n.mu.
func (n *Node) relayAcceptanceLocked(peer string, now time.Time) *time.Duration {
	at, ok := n.relayLost[peer]
	if !ok {
		return nil
	}
	if now.Sub(at) >= relayLostMemory || now.Before(at) {
		delete(n.relayLost, peer)
		return nil
	}
	d := relayLostAcceptance
	return &d
}
