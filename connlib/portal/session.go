package portal

import (
	"encoding/json"
	"errors"
	"reflect"
	"sync"

	"go.uber.org/zap"

	"github.com/gozone/gozone/phoenix"
)

// ErrNotConnected is returned by Session.Send while the portal connection
// is down; the caller drops the message (connlib does the same).
var ErrNotConnected = errors.New("portal: not connected")

// SendFunc pushes one event on the joined channel (e.g. a method value of
// the phoenix client). It must not block for long.
type SendFunc func(event string, payload any) error

// SendVia adapts a phoenix.Client to a SendFunc: the payload is marshalled
// with encoding/json and pushed without a reply callback (error replies
// surface as phoenix.PushFailed events). phoenix.ErrNotConnected is mapped
// to ErrNotConnected.
func SendVia(c *phoenix.Client) SendFunc {
	return func(event string, payload any) error {
		b, err := json.Marshal(payload)
		if err != nil {
			return err
		}
		if err := c.Push(event, b, nil); err != nil {
			if errors.Is(err, phoenix.ErrNotConnected) {
				return ErrNotConnected
			}
			return err
		}
		return nil
	}
}

// MaxHeldCandidateMessages bounds what Session keeps while disconnected; the
// oldest message is dropped beyond it, as a stale candidate is worth less
// than a fresh one.
const MaxHeldCandidateMessages = 1024

type heldMessage struct {
	event   string
	payload any
}

// Session is the part of a device's portal session that outlives one
// WebSocket connection: it sends set_snownet_capabilities after every join
// and holds ICE candidate messages while the portal is unreachable, flushing
// them in order on the next join (reference §2.7, §4.3).
//
// All methods are safe for concurrent use. OnJoin and OnDisconnect are
// called by the code that drives the phoenix connection; Send and
// SendCandidates by the tunnel.
type Session struct {
	log          *zap.Logger
	capabilities SnownetCapabilities

	mu   sync.Mutex
	send SendFunc // nil while disconnected
	held []heldMessage
}

// NewSession returns a disconnected Session. gozone does not implement
// iceless mode, so it announces {"iceless": false}.
func NewSession(log *zap.Logger) *Session {
	if log == nil {
		log = zap.NewNop()
	}
	return &Session{log: log}
}

// OnJoin is called after each successful join reply. It sends
// set_snownet_capabilities first, then flushes held candidate messages. If
// a send fails the remaining messages stay held and the error is returned
// (the connection is presumably going down again).
func (s *Session) OnJoin(send SendFunc) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.send = send
	if err := send(EventSetSnownetCapabilities, s.capabilities); err != nil {
		s.send = nil
		return err
	}
	for len(s.held) > 0 {
		m := s.held[0]
		if err := send(m.event, m.payload); err != nil {
			s.send = nil
			return err
		}
		s.held[0] = heldMessage{}
		s.held = s.held[1:]
	}
	s.held = nil
	return nil
}

// OnDisconnect is called when the connection is lost; from now on candidate
// messages are held.
func (s *Session) OnDisconnect() {
	s.mu.Lock()
	s.send = nil
	s.mu.Unlock()
}

// Connected reports whether a joined connection is available.
func (s *Session) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.send != nil
}

// Send pushes a message that is not worth holding (e.g.
// request_authorization, which the tunnel retries on the next packet). It
// returns ErrNotConnected while disconnected.
func (s *Session) Send(event string, payload any) error {
	s.mu.Lock()
	send := s.send
	s.mu.Unlock()
	if send == nil {
		return ErrNotConnected
	}
	return send(event, payload)
}

// SendCandidates pushes a candidate message (new_gateway_ice_candidates,
// broadcast_ice_candidates, their invalidations, ...) now, or holds it until
// the next join if the portal is down or the send fails. An exact
// duplicate of a held message is not held twice.
func (s *Session) SendCandidates(event string, payload any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.send != nil && len(s.held) == 0 {
		err := s.send(event, payload)
		if err == nil {
			return
		}
		s.log.Debug("holding candidates after failed send", zap.String("event", event), zap.Error(err))
	}
	for _, h := range s.held {
		if h.event == event && reflect.DeepEqual(h.payload, payload) {
			return
		}
	}
	if len(s.held) >= MaxHeldCandidateMessages {
		s.held = s.held[1:]
		s.log.Warn("dropping oldest held candidate message")
	}
	s.held = append(s.held, heldMessage{event, payload})
}

// Held returns how many candidate messages are waiting for a join.
func (s *Session) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}
