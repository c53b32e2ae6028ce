package snownet

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestLifecycle(t *testing.T) {
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	t.Run("no remote candidate fails after 10s", func(t *testing.T) {
		l := newLifecycle(t0)
		if l.tick(at(CandidateTimeout-time.Millisecond)) != lcNone {
			t.Fatal("failed too early")
		}
		if l.tick(at(CandidateTimeout)) != lcFailed || l.state() != StateFailed || l.failReason != "no remote candidate" {
			t.Fatalf("not failed: %+v", l)
		}
		if l.tick(at(time.Hour)) != lcNone {
			t.Fatal("failure reported twice")
		}
	})
	t.Run("a remote candidate stops the candidate timer", func(t *testing.T) {
		l := newLifecycle(t0)
		l.remoteCandidate()
		if a := l.tick(at(time.Minute)); a != lcNone || l.state() != StateConnecting {
			t.Fatalf("action %v state %v", a, l.state())
		}
	})
	t.Run("established needs handshake and nomination", func(t *testing.T) {
		l := newLifecycle(t0)
		l.remoteCandidate()
		l.handshakeDone()
		if l.tick(at(time.Second)) != lcNone {
			t.Fatal("established without nomination")
		}
		l = newLifecycle(t0)
		l.remoteCandidate()
		l.pairNominated()
		if l.tick(at(time.Second)) != lcNone {
			t.Fatal("established without handshake")
		}
		l.handshakeDone()
		if l.tick(at(2*time.Second)) != lcEstablished || l.state() != StateConnected {
			t.Fatal("not established")
		}
		if l.tick(at(3*time.Second)) != lcNone {
			t.Fatal("established reported twice")
		}
	})
	t.Run("idle after 20s without traffic, active again on traffic", func(t *testing.T) {
		l := newLifecycle(t0)
		l.remoteCandidate()
		l.pairNominated()
		l.handshakeDone()
		l.tick(t0)
		l.tick(at(IdleTimeout - time.Millisecond))
		if l.state() != StateConnected {
			t.Fatal("idle too early")
		}
		l.tick(at(IdleTimeout))
		if l.state() != StateIdle {
			t.Fatalf("state %v, want idle", l.state())
		}
		l.activity(at(IdleTimeout + time.Second))
		if l.state() != StateConnected {
			t.Fatal("traffic must leave idle")
		}
	})
	t.Run("disconnected for 2s fails, recovery within grace does not", func(t *testing.T) {
		l := newLifecycle(t0)
		l.remoteCandidate()
		l.iceDisconnected(at(time.Second))
		l.iceDisconnected(at(2 * time.Second)) // repeated report keeps the first instant
		if l.tick(at(time.Second+DisconnectGrace-time.Millisecond)) != lcNone {
			t.Fatal("failed within grace")
		}
		l.iceRecovered()
		if l.tick(at(time.Minute)) != lcNone {
			t.Fatal("failed after recovery")
		}
		l.iceDisconnected(at(2 * time.Minute))
		if l.tick(at(2*time.Minute+DisconnectGrace)) != lcFailed || l.failReason != "ice disconnected" {
			t.Fatalf("not failed after grace: %+v", l)
		}
	})
	t.Run("ice failed fails at once, even if established", func(t *testing.T) {
		l := newLifecycle(t0)
		l.remoteCandidate()
		l.pairNominated()
		l.handshakeDone()
		l.iceFailedNow()
		if l.tick(at(time.Millisecond)) != lcFailed {
			t.Fatal("not failed")
		}
	})
}

// fakeClock is a Clock moved by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestNodeCandidateTimeout(t *testing.T) {
	clk := &fakeClock{t: t0}
	a := newTestPeer(t, "alice", "10.0.0.1", func(c *Config) { c.Clock = clk; c.TickInterval = 10 * time.Millisecond })
	remote, _ := GeneratePrivateKey()
	err := a.node.UpsertConnection(ConnParams{
		Peer: "ghost", PublicKey: remote.PublicKey(),
		Local: a.creds, Remote: Credentials{Ufrag: "ghst", Pwd: "ghostpasswordghostpass"},
		Role:       RoleControlling,
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.9/32")},
	})
	if err != nil {
		t.Fatal(err)
	}
	a.mustEvent(EventNewCandidate, "ghost", 10*time.Second)
	a.mustEvent(EventNoRelays, "ghost", time.Second)
	clk.Advance(CandidateTimeout - time.Second)
	time.Sleep(100 * time.Millisecond) // several ticks at the earlier instant
	if _, ok := a.waitEvent(0, func(e Event) bool { return e.Kind == EventConnectionFailed }); ok {
		t.Fatal("failed before the candidate timeout")
	}
	clk.Advance(2 * time.Second)
	ev := a.mustEvent(EventConnectionFailed, "ghost", 10*time.Second)
	if ev.Reason != "no remote candidate" {
		t.Fatalf("reason %q", ev.Reason)
	}
	if len(a.node.Stats()) != 0 {
		t.Fatal("failed connection still listed")
	}
	if err := a.node.AddRemoteCandidate("ghost", "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"); err != ErrUnknownConnection {
		t.Fatalf("candidate for removed connection: %v", err)
	}
}

// Idle detection on a live Node, driven by the injected clock: no
// WireGuard traffic for IdleTimeout -> idle; a packet -> connected again.
func TestNodeIdleWithFakeClock(t *testing.T) {
	clk := &fakeClock{t: t0}
	fake := func(c *Config) { c.Clock = clk; c.TickInterval = 10 * time.Millisecond }
	a := newTestPeer(t, "alice", "10.0.0.1", fake)
	b := newTestPeer(t, "bob", "10.0.0.2", fake)
	connectPair(t, a, b)
	a.mustEvent(EventConnectionEstablished, "bob", establishTimeout)
	pingOnce(t, a, b, 10*time.Second)

	// Each step moves the clock and waits for the node to poll at the new
	// instant. A stray WireGuard keepalive (real-time timers) may count as
	// traffic, so a step is retried a few times.
	reach := func(step time.Duration, want ConnState) {
		t.Helper()
		for i := 0; i < 5; i++ {
			clk.Advance(step)
			waitPolled(t, a.node, clk.Now())
			if st := connStats(t, a, "bob"); st.State == want {
				return
			}
		}
		t.Fatalf("state %v, want %v", connStats(t, a, "bob").State, want)
	}
	reach(IdleTimeout+time.Second, StateIdle)
	pingOnce(t, a, b, 10*time.Second)
	reach(time.Second, StateConnected)
}

// waitPolled waits until n's lifecycle tick has polled WireGuard at now.
func waitPolled(t *testing.T, n *Node, now time.Time) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n.mu.Lock()
		done := !n.lastPoll.Before(now)
		n.mu.Unlock()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("node did not poll")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
