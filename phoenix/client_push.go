package phoenix

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"

	"go.uber.org/zap"
)

// ReplyFunc receives the reply to a push: the response of an ok reply, or
// a *ReplyError for an error reply, or ErrDisconnected when the connection
// ended first. It runs on the client's reader goroutine and must not
// block; response is only valid during the call (copy it to keep it).
type ReplyFunc func(response json.RawMessage, err error)

type outMsg struct {
	event   string
	payload []byte // owned; its capacity is reused
	fn      ReplyFunc
}

type pendingReply struct {
	fn ReplyFunc
}

var errBadPayload = errors.New("phoenix: push payload is not valid JSON")

// Push queues event with payload (raw JSON; nil sends null) on the joined
// topic. The payload is copied, so the caller may reuse it at once. onReply
// (may be nil) gets the reply. Push never blocks on the network.
//
// It fails with ErrNotConnected unless the channel is joined (messages are
// not kept across reconnects), and with ErrQueueFull when MaxQueue
// messages are waiting. A push without onReply whose event and payload
// equal a message still waiting in the queue is dropped as a duplicate
// (reference §4.1) and Push returns nil.
func (c *Client) Push(event string, payload json.RawMessage, onReply ReplyFunc) error {
	if len(payload) > 0 {
		if end, err := scanValue(payload, 0); err != nil || skipSpace(payload, end) != len(payload) {
			return errBadPayload
		}
	}
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	if s == nil {
		return ErrNotConnected
	}
	return s.enqueue(event, payload, onReply)
}

// Request pushes and waits for the reply, ctx bounding the wait. An error
// reply is returned as a *ReplyError, a lost connection as
// ErrDisconnected. Use it only for events the server answers: the
// portal's {:noreply} events never reply, and an abandoned request keeps
// a small pending entry until the connection ends.
func (c *Client) Request(ctx context.Context, event string, payload json.RawMessage) (json.RawMessage, error) {
	type result struct {
		resp json.RawMessage
		err  error
	}
	ch := make(chan result, 1)
	err := c.Push(event, payload, func(resp json.RawMessage, err error) {
		ch <- result{bytes.Clone(resp), err}
	})
	if err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r.resp, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *session) enqueue(event string, payload []byte, fn ReplyFunc) error {
	s.mu.Lock()
	if !s.joined {
		s.mu.Unlock()
		return ErrNotConnected
	}
	if fn == nil {
		for _, m := range s.queue {
			if m.fn == nil && m.event == event && bytes.Equal(m.payload, payload) {
				s.mu.Unlock()
				s.c.log.Debug("dropping duplicate of a queued message", zap.String("event", event))
				return nil
			}
		}
	}
	if len(s.queue) >= s.c.cfg.MaxQueue {
		s.mu.Unlock()
		return ErrQueueFull
	}
	var m *outMsg
	if n := len(s.free); n > 0 {
		m = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		m = new(outMsg)
	}
	m.event = event
	m.payload = append(m.payload[:0], payload...)
	m.fn = fn
	s.queue = append(s.queue, m)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// writeLoop drains the queue while joined. It holds wmu for each write so
// a rejoin cannot interleave.
func (s *session) writeLoop() {
	c := s.c
	var buf []byte
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
		}
		for {
			s.wmu.Lock()
			s.mu.Lock()
			if !s.joined || len(s.queue) == 0 {
				s.mu.Unlock()
				s.wmu.Unlock()
				break
			}
			m := s.queue[0]
			copy(s.queue, s.queue[1:])
			s.queue[len(s.queue)-1] = nil
			s.queue = s.queue[:len(s.queue)-1]
			ref := s.nextRef.Add(1) - 1
			if m.fn != nil {
				s.pending[ref] = pendingReply{fn: m.fn}
			}
			s.recent[ref%uint64(len(s.recent))] = recentRef{ref: ref, event: m.event}
			buf = appendClientFrame(buf[:0], c.v2, c.topicLit, m.event, m.payload, ref, s.joinRef.Load(), true)
			m.fn = nil
			m.event = ""
			s.free = append(s.free, m)
			s.mu.Unlock()
			err := s.writeNoTimeout(buf)
			s.wmu.Unlock()
			if err != nil {
				return
			}
		}
	}
}

// failQueued drops queued messages, telling their callbacks err.
func (s *session) failQueued(err error) {
	s.mu.Lock()
	var fns []ReplyFunc
	for i, m := range s.queue {
		if m.fn != nil {
			fns = append(fns, m.fn)
		}
		m.fn, m.event = nil, ""
		s.free = append(s.free, m)
		s.queue[i] = nil
	}
	s.queue = s.queue[:0]
	s.mu.Unlock()
	for _, fn := range fns {
		fn(nil, err)
	}
}

// failAll ends every queued and in-flight push with err.
func (s *session) failAll(err error) {
	s.mu.Lock()
	s.joined = false
	var fns []ReplyFunc
	for ref, p := range s.pending {
		fns = append(fns, p.fn)
		delete(s.pending, ref)
	}
	s.mu.Unlock()
	s.failQueued(err)
	for _, fn := range fns {
		fn(nil, err)
	}
}
