package snownet

import "time"

// Timers of the connection lifecycle (Firezone snownet, reference §2.3).
const (
	// CandidateTimeout: a connection that received no remote candidate
	// within this time after creation fails.
	CandidateTimeout = 10 * time.Second
	// IdleTimeout: an established connection without WireGuard traffic in
	// either direction for this long is marked idle.
	IdleTimeout = 20 * time.Second
	// DisconnectGrace: how long ICE may stay Disconnected before the
	// connection fails (it may recover within it).
	DisconnectGrace = 2 * time.Second
)

// ConnState is a connection's lifecycle state.
type ConnState uint8

const (
	StateConnecting ConnState = iota // ICE checking and/or WireGuard handshake pending
	StateConnected                   // handshake done and pair nominated
	StateIdle                        // connected, no traffic for IdleTimeout
	StateFailed                      // terminal
)

func (s ConnState) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateIdle:
		return "idle"
	default:
		return "failed"
	}
}

// lcAction is what a tick asks the node to do.
type lcAction uint8

const (
	lcNone        lcAction = iota
	lcEstablished          // emit ConnectionEstablished
	lcFailed               // emit ConnectionFailed and remove
)

// lifecycle is the timer logic of one connection. It holds no clock: every
// input carries the time, so it is tested with made-up instants. Not safe
// for concurrent use; the node guards it with its lock.
type lifecycle struct {
	created        time.Time
	remoteCand     bool
	nominated      bool
	handshake      bool
	established    bool
	disconnectedAt time.Time // zero unless ICE is Disconnected
	iceFailed      bool
	allocLost      bool // our relay allocation under the nominated pair was replaced
	lastActivity   time.Time
	idle           bool
	failReason     string
}

func newLifecycle(now time.Time) lifecycle {
	return lifecycle{created: now, lastActivity: now}
}

func (l *lifecycle) remoteCandidate()     { l.remoteCand = true }
func (l *lifecycle) pairNominated()       { l.nominated = true }
func (l *lifecycle) handshakeDone()       { l.handshake = true }
func (l *lifecycle) iceFailedNow()        { l.iceFailed = true }
func (l *lifecycle) relayLost()           { l.allocLost = true }
func (l *lifecycle) iceRecovered()        { l.disconnectedAt = time.Time{} }
func (l *lifecycle) activity(t time.Time) { l.lastActivity, l.idle = t, false }

// pathDown reports whether ICE has lost the path (Disconnected, maybe
// within the grace period, or Failed).
func (l *lifecycle) pathDown() bool { return l.iceFailed || !l.disconnectedAt.IsZero() }

func (l *lifecycle) iceDisconnected(now time.Time) {
	if l.disconnectedAt.IsZero() {
		l.disconnectedAt = now
	}
}

// touch marks activity that is not traffic (a re-upsert or a candidate
// change), which also leaves idle.
func (l *lifecycle) touch(now time.Time) { l.activity(now) }

// state is the current state.
func (l *lifecycle) state() ConnState {
	switch {
	case l.failReason != "":
		return StateFailed
	case !l.established:
		return StateConnecting
	case l.idle:
		return StateIdle
	default:
		return StateConnected
	}
}

// tick evaluates the timers at now. Failure wins over establishment.
func (l *lifecycle) tick(now time.Time) lcAction {
	if l.failReason != "" {
		return lcNone
	}
	switch {
	case l.allocLost:
		// The cause, even if ICE noticed too.
		l.failReason = reasonRelayLost
	case l.iceFailed:
		l.failReason = "ice failed"
	case !l.remoteCand && now.Sub(l.created) >= CandidateTimeout:
		l.failReason = "no remote candidate"
	case !l.disconnectedAt.IsZero() && now.Sub(l.disconnectedAt) >= DisconnectGrace:
		l.failReason = "ice disconnected"
	}
	if l.failReason != "" {
		return lcFailed
	}
	if !l.established && l.nominated && l.handshake {
		l.established = true
		l.lastActivity = now
		return lcEstablished
	}
	if l.established && !l.idle && now.Sub(l.lastActivity) >= IdleTimeout {
		l.idle = true
	}
	return lcNone
}
