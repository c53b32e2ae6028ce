package portal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrUnknownEvent is returned by the Decode functions for an event name this
// version does not know. Callers log it and carry on: the portal adds events
// before devices learn them.
var ErrUnknownEvent = errors.New("portal: unknown event")

// ErrObsolete marks an event that is recognised but carries nothing a
// current device acts on (e.g. access_authorization_expiry_updated, legacy
// pre-1.4 pushes). The Message is still returned.
var ErrObsolete = errors.New("portal: obsolete event")

// Message is one decoded channel message. Event is the canonical v2 event
// name (v1 aliases such as flow_created are mapped to it); Payload is a
// pointer to the event's payload type, e.g. *GatewayInit.
type Message struct {
	Event   string
	Payload any
}

type decodeFunc func(b []byte) (any, error)

func into[T any](b []byte) (any, error) {
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		return nil, err
	}
	return v, nil
}

// objectInto is into for payloads that must be JSON objects. null counts as
// an empty object, as Phoenix writes null for empty payloads.
func objectInto[T any](b []byte) (any, error) {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] != '{' && !bytes.Equal(b, []byte("null")) {
		return nil, errors.New("payload is not an object")
	}
	return into[T](b)
}

// table is one direction's events: canonical name → decoder, plus aliases.
type table struct {
	name     string
	decoders map[string]decodeFunc
	aliases  map[string]string
	obsolete map[string]bool
}

func (t *table) decode(event string, payload []byte) (Message, error) {
	if c, ok := t.aliases[event]; ok {
		event = c
	}
	d, ok := t.decoders[event]
	if !ok {
		return Message{Event: event}, fmt.Errorf("%w: %s %q", ErrUnknownEvent, t.name, event)
	}
	if len(bytes.TrimSpace(payload)) == 0 {
		payload = []byte("null")
	}
	v, err := d(payload)
	if err != nil {
		return Message{Event: event}, fmt.Errorf("portal: %s %q: %w", t.name, event, err)
	}
	m := Message{Event: event, Payload: v}
	if t.obsolete[event] {
		return m, fmt.Errorf("%w: %s %q", ErrObsolete, t.name, event)
	}
	return m, nil
}

// Disconnect is pushed when the token or session expired; connlib treats
// reason "token_expired" as fatal.
type Disconnect struct {
	Reason string `json:"reason"`
}

// EventDisconnect is valid on both device channels.
const EventDisconnect = "disconnect"

// Events used on both device channels.
const (
	EventInit                             = "init"
	EventRelaysPresence                   = "relays_presence"
	EventRejectAccess                     = "reject_access"
	EventNoRelays                         = "no_relays"
	EventSetSnownetCapabilities           = "set_snownet_capabilities"
	EventAuthorizationCreated             = "authorization_created"
	EventIceCandidates                    = "ice_candidates"
	EventInvalidateIceCandidates          = "invalidate_ice_candidates"
	EventAccessAuthorizationExpiryUpdated = "access_authorization_expiry_updated"
)

// ClientCandidates carries ICE candidates about one client: {"client_id",
// "candidates"}. Each candidate is one SDP "candidate:" line.
type ClientCandidates struct {
	ClientID   string   `json:"client_id"`
	Candidates []string `json:"candidates"`
}

// GatewayCandidates carries ICE candidates about one gateway.
type GatewayCandidates struct {
	GatewayID  string   `json:"gateway_id"`
	Candidates []string `json:"candidates"`
}
