package snownet

import "sync"

// EventKind names what happened.
type EventKind uint8

const (
	// EventNewCandidate: a local candidate to signal to the peer
	// (Candidate holds the SDP "candidate:" line).
	EventNewCandidate EventKind = iota + 1
	// EventInvalidateCandidate: a local relay candidate that is gone.
	EventInvalidateCandidate
	// EventConnectionEstablished: WireGuard handshake done and a pair
	// nominated (Path says which kind).
	EventConnectionEstablished
	// EventConnectionFailed: the connection was removed (Reason says why).
	EventConnectionFailed
	// EventConnectionClosed: closed by CloseConnection or Reset.
	EventConnectionClosed
	// EventNoRelays: a connection was created, or the relay set became
	// empty, while the node knows no relays. Peer is set in the first case.
	EventNoRelays
)

func (k EventKind) String() string {
	switch k {
	case EventNewCandidate:
		return "new-candidate"
	case EventInvalidateCandidate:
		return "invalidate-candidate"
	case EventConnectionEstablished:
		return "connection-established"
	case EventConnectionFailed:
		return "connection-failed"
	case EventConnectionClosed:
		return "connection-closed"
	case EventNoRelays:
		return "no-relays"
	default:
		return "unknown"
	}
}

// Event is one notification from a Node. Fields not meaningful for Kind
// are zero.
type Event struct {
	Kind      EventKind
	Peer      string
	Candidate string
	Path      PathKind
	Reason    string
	// Active, on EventConnectionFailed, says the connection was
	// established and not idle when it failed: it carried traffic within
	// IdleTimeout, so the caller may want it back at once rather than on
	// the next packet (a TCP receiver has nothing to send).
	Active bool
}

// eventQueue is an unbounded FIFO drained into a channel by one goroutine,
// so emitting never blocks (events are emitted from pion callbacks and
// under the node's lock, and the consumer may call back into the node).
type eventQueue struct {
	mu     sync.Mutex
	q      []Event
	wake   chan struct{}
	out    chan Event
	done   chan struct{}
	closed bool
}

func newEventQueue() *eventQueue {
	e := &eventQueue{wake: make(chan struct{}, 1), out: make(chan Event), done: make(chan struct{})}
	go e.pump()
	return e
}

func (e *eventQueue) push(ev Event) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.q = append(e.q, ev)
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *eventQueue) pump() {
	defer close(e.out)
	for {
		e.mu.Lock()
		if len(e.q) == 0 {
			closed := e.closed
			e.mu.Unlock()
			if closed {
				return
			}
			select {
			case <-e.wake:
			case <-e.done:
			}
			continue
		}
		ev := e.q[0]
		e.q = e.q[1:]
		e.mu.Unlock()
		select {
		case e.out <- ev:
		case <-e.done:
			return
		}
	}
}

// close stops the pump; the channel is closed, queued events are dropped.
func (e *eventQueue) close() {
	e.mu.Lock()
	if !e.closed {
		e.closed = true
		close(e.done)
	}
	e.mu.Unlock()
}
