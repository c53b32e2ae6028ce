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
//
// One exception to failing: a connection the caller upserted again with
// identical parameters within restartAfterReuse. That is how a gateway
// learns that the client re-asked (its side failed first, e.g. because its
// own allocation on the same relay was replaced a moment earlier); the
// upsert reused our connection because it still looked healthy, and the
// client's new agent is now talking to it. Failing it would leave the
// client waiting for ICE to fail (~30 s). It is restarted instead: a new
// agent with the same parameters, given the peer's candidates again.

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
	// restartAfterReuse: a connection re-upserted this recently is
	// restarted rather than failed when its allocation is replaced.
	restartAfterReuse = 15 * time.Second
	// maxReplayCandidates bounds the remote candidates a connection keeps
	// for a restart.
	maxReplayCandidates = 64
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
	var restart []*connection
	at := n.clock.Now()
	for peer, t := range n.relayLost {
		if at.Sub(t) >= relayLostMemory || at.Before(t) {
			delete(n.relayLost, peer) // peers that never came back
		}
	}
	for _, c := range n.conns {
		if c.closed || !sendsFromRelayed(c.pair, old) {
			continue
		}
		if !c.reusedAt.IsZero() && at.Sub(c.reusedAt) < restartAfterReuse && !at.Before(c.reusedAt) {
			restart = append(restart, c)
			continue
		}
		c.lc.relayLost()
		lost = append(lost, c.id)
		if n.relayLost == nil {
			n.relayLost = make(map[string]time.Time)
		}
		n.relayLost[c.id] = at
	}
	var started []*connection
	for _, c := range restart {
		if nc := n.restartLocked(c, at); nc != nil {
			started = append(started, nc)
		}
	}
	n.mu.Unlock()
	n.log.Info("relay allocation replaced", zap.Stringer("relay", relay), zap.Stringer("old", old),
		zap.Stringer("new", now), zap.Strings("failing", lost), zap.Int("restarting", len(restart)))
	for _, nc := range started {
		n.startRestarted(nc)
	}
	if len(lost) > 0 {
		n.wakeTick()
	}
}

// restartLocked replaces c by a new connection with the same parameters
// and remote candidates (not yet started). If that fails, c fails. The
// caller holds n.mu.
func (n *Node) restartLocked(c *connection, now time.Time) *connection {
	params, remote := c.params, c.remoteCands
	n.removeLocked(c)
	nc, err := n.newConnectionLocked(params, now)
	if err != nil {
		n.events.push(Event{Kind: EventConnectionFailed, Peer: c.id, Reason: reasonRelayLost + ": restart: " + err.Error()})
		return nil
	}
	nc.remoteCands = remote
	if len(remote) > 0 {
		nc.lc.remoteCandidate()
	}
	return nc
}

// startRestarted starts a connection made by restartLocked and gives its
// agent the peer's candidates. Called without the lock.
func (n *Node) startRestarted(c *connection) {
	if err := c.ice.start(); err != nil {
		n.failConnection(c, "gathering: "+err.Error())
		return
	}
	n.mu.Lock()
	remote := c.remoteCands
	n.mu.Unlock()
	for _, sdp := range remote {
		if cand, err := parseCandidate(sdp); err == nil {
			_ = c.ice.addRemote(cand)
		}
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
