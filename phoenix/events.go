package phoenix

import (
	"encoding/json"
	"time"
)

// State is the client's connection state.
type State int

const (
	// StateConnecting: dialling the portal or waiting for the join reply.
	StateConnecting State = iota
	// StateJoined: the topic is joined; Push works.
	StateJoined
	// StateReconnecting: the last attempt failed or the connection was
	// lost; the next attempt is at StateChange.NextAttempt.
	StateReconnecting
	// StateClosed: Run has returned.
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateJoined:
		return "joined"
	case StateReconnecting:
		return "reconnecting"
	case StateClosed:
		return "closed"
	}
	return "unknown"
}

// Event is what Client.Events delivers: *StateChange, *Joined, *Message or
// *PushFailed. Type-switch on it.
type Event interface{ isEvent() }

// StateChange reports a new connection state.
type StateChange struct {
	State State
	// NextAttempt is when the next connection attempt starts
	// (StateReconnecting only).
	NextAttempt time.Time
	// Err is why the previous connection or attempt ended
	// (StateReconnecting), or the fatal error (StateClosed; nil when Run's
	// context was cancelled).
	Err error
}

// Joined reports a successful join (the first one and every rejoin after a
// reconnect or an "unmatched topic" reply). It is delivered after the
// StateChange to StateJoined; Push works from then on.
type Joined struct {
	Topic string
	// Response is the join reply's response (e.g. {}).
	Response json.RawMessage
}

// Message is an event the server pushed on the joined topic (ref null),
// e.g. "init" or "request_connection". Payload is the client's own copy.
type Message struct {
	Topic   string
	Event   string
	Payload json.RawMessage
}

// PushFailed reports an error reply to a push sent without a reply
// callback (e.g. the portal's "unknown_message"), so such failures are not
// silent. Event is the pushed event's name when still known.
type PushFailed struct {
	Event string
	Ref   uint64
	Err   *ReplyError
}

func (*StateChange) isEvent() {}
func (*Joined) isEvent()      {}
func (*Message) isEvent()     {}
func (*PushFailed) isEvent()  {}
