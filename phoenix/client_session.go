package phoenix

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"
)

// session is one WebSocket connection of a Client: the join, then the
// reader, writer and heartbeat goroutines until the connection ends.
type session struct {
	c    *Client
	conn *websocket.Conn
	ctx  context.Context
	// end stops the session; its cause says why (context.Cause).
	end context.CancelCauseFunc

	// nextRef counts refs from 0 per connection: the join is 0 and
	// heartbeats share the counter (reference §4.1).
	nextRef atomic.Uint64
	// joinRef is the ref of the current join; awaitingJoin is set while
	// its reply is outstanding.
	joinRef      atomic.Uint64
	awaitingJoin atomic.Bool
	joinReply    chan joinResult
	joinDone     chan struct{} // join() → reader: join outcome handled
	rejoin       chan struct{}
	unanswered   atomic.Int32

	// wmu orders pushes against a rejoin, so nothing but the join goes
	// out between a join and its reply.
	wmu sync.Mutex

	mu      sync.Mutex // guards everything below
	joined  bool
	queue   []*outMsg
	free    []*outMsg
	pending map[uint64]pendingReply
	recent  [64]recentRef
	wake    chan struct{}
}

type joinResult struct {
	ok       bool
	response []byte // a copy
}

type recentRef struct {
	ref   uint64
	event string
}

func newSession(c *Client, parent context.Context, conn *websocket.Conn) *session {
	ctx, end := context.WithCancelCause(parent)
	return &session{
		c:         c,
		conn:      conn,
		ctx:       ctx,
		end:       end,
		joinReply: make(chan joinResult, 1),
		joinDone:  make(chan struct{}),
		rejoin:    make(chan struct{}, 1),
		pending:   make(map[uint64]pendingReply),
		wake:      make(chan struct{}, 1),
	}
}

// connectOnce dials, joins and serves one connection. joined reports
// whether the join succeeded (which resets the backoff); err is why the
// connection ended.
func (c *Client) connectOnce(ctx context.Context) (joined bool, err error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return false, err
	}
	// The session's context is not derived from ctx: cancelling a read
	// closes the socket at once, and on shutdown we first say phx_leave.
	s := newSession(c, context.Background(), conn)
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		j := s.joined
		s.mu.Unlock()
		if j {
			s.leave()
		}
		s.end(context.Cause(ctx))
	})
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.readLoop() }()
	defer func() {
		s.end(err)
		c.mu.Lock()
		if c.sess == s {
			c.sess = nil
		}
		c.mu.Unlock()
		_ = conn.Close(websocket.StatusNormalClosure, "")
		_ = conn.CloseNow()
		wg.Wait()
		s.failAll(ErrDisconnected)
	}()

	if err := s.join(); err != nil {
		return false, err
	}
	joined = true
	wg.Add(2)
	go func() { defer wg.Done(); s.writeLoop() }()
	go func() { defer wg.Done(); s.heartbeatLoop() }()
	for {
		select {
		case <-s.ctx.Done():
			return true, context.Cause(s.ctx)
		case <-s.rejoin:
			c.log.Info("portal says our topic is not joined, rejoining")
			if err := s.join(); err != nil {
				return true, err
			}
		}
	}
}

// join sends phx_join and waits for its reply; on success the session
// becomes the client's joined session and Joined is emitted.
func (s *session) join() error {
	c := s.c
	s.wmu.Lock()
	s.mu.Lock()
	s.joined = false
	s.mu.Unlock()
	c.mu.Lock()
	if c.sess == s {
		c.sess = nil
	}
	c.mu.Unlock()
	s.failQueued(ErrNotConnected)
	ref := s.nextRef.Add(1) - 1
	s.joinRef.Store(ref)
	s.awaitingJoin.Store(true)
	frame := appendClientFrame(nil, c.v2, c.topicLit, EventJoin, c.cfg.JoinPayload, ref, ref, true)
	err := s.write(frame)
	s.wmu.Unlock()
	if err != nil {
		return err
	}
	t := c.clock.NewTimer(c.cfg.JoinTimeout)
	defer t.Stop()
	var res joinResult
	select {
	case <-s.ctx.Done():
		return context.Cause(s.ctx)
	case <-t.C():
		return ErrJoinTimeout
	case res = <-s.joinReply:
	}
	defer func() {
		select {
		case s.joinDone <- struct{}{}:
		case <-s.ctx.Done():
		}
	}()
	if !res.ok {
		return &JoinError{Topic: c.cfg.Topic, Reason: reasonOf(res.response), Response: res.response}
	}
	s.unanswered.Store(0)
	// "unmatched topic" replies to pushes sent before this join all came
	// before its reply; they are answered by this join.
	select {
	case <-s.rejoin:
	default:
	}
	s.mu.Lock()
	s.joined = true
	s.mu.Unlock()
	c.mu.Lock()
	c.sess = s
	c.mu.Unlock()
	c.log.Info("joined portal channel")
	c.setState(s.ctx, &StateChange{State: StateJoined})
	c.emit(s.ctx, &Joined{Topic: c.cfg.Topic, Response: res.response})
	return nil
}

// leave tells the server we are going (best effort, on shutdown).
func (s *session) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ref := s.nextRef.Add(1) - 1
	frame := appendClientFrame(nil, s.c.v2, s.c.topicLit, EventLeave, []byte("{}"), ref, s.joinRef.Load(), true)
	_ = s.conn.Write(ctx, websocket.MessageText, frame)
}

// writeTimeout bounds one WebSocket write; a peer that does not read for
// this long is treated as gone.
const writeTimeout = 10 * time.Second

func (s *session) write(frame []byte) error {
	ctx, cancel := context.WithTimeout(s.ctx, writeTimeout)
	defer cancel()
	return s.writeCtx(ctx, frame)
}

// writeNoTimeout is the push path's write. It passes a context without a
// Done channel because coder/websocket arms a context.AfterFunc (several
// allocations) per call otherwise. It still cannot hang: heartbeats are
// written with writeTimeout, queue behind a stuck write, and end the
// session when it expires, and ending the session closes the socket.
func (s *session) writeNoTimeout(frame []byte) error {
	return s.writeCtx(context.Background(), frame)
}

func (s *session) writeCtx(ctx context.Context, frame []byte) error {
	if err := s.conn.Write(ctx, websocket.MessageText, frame); err != nil {
		err = fmt.Errorf("phoenix: write: %w", err)
		s.end(err)
		return err
	}
	return nil
}

func (s *session) heartbeatLoop() {
	c := s.c
	var buf []byte
	for {
		t := c.clock.NewTimer(c.cfg.HeartbeatInterval)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		if n := s.unanswered.Load(); n > maxMissedHeartbeats {
			c.log.Warn("portal heartbeats unanswered, reconnecting", zap.Int32("missed", n))
			s.end(ErrHeartbeatTimeout)
			return
		}
		ref := s.nextRef.Add(1) - 1
		buf = appendClientFrame(buf[:0], c.v2, topicPhoenixLit, EventHeartbeat, []byte("{}"), ref, 0, false)
		s.unanswered.Add(1)
		if s.write(buf) != nil {
			return
		}
	}
}

var topicPhoenixLit = []byte(`"phoenix"`)

func (s *session) readLoop() {
	c := s.c
	var buf bytes.Buffer
	for {
		// Background, not s.ctx: see writeNoTimeout. Ending the session
		// closes the socket, which ends this read.
		typ, r, err := s.conn.Reader(context.Background())
		if err != nil {
			s.end(readErr(err))
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			s.end(readErr(err))
			return
		}
		if typ != websocket.MessageText {
			c.badFrames.Add(1)
			c.log.Debug("dropping binary frame")
			continue
		}
		f, err := decodeFrame(buf.Bytes(), c.v2)
		if err != nil {
			c.badFrames.Add(1)
			c.log.Debug("dropping malformed frame", zap.Error(err), zap.Int("size", buf.Len()))
			continue
		}
		s.handle(&f)
	}
}

// readErr keeps the WebSocket close status readable in logs.
func readErr(err error) error {
	if st := websocket.CloseStatus(err); st != -1 {
		return fmt.Errorf("phoenix: socket closed by server (%d): %w", st, err)
	}
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("phoenix: socket closed: %w", err)
	}
	return fmt.Errorf("phoenix: read: %w", err)
}

func (s *session) handle(f *rawFrame) {
	c := s.c
	if string(f.topic) == TopicPhoenix {
		if string(f.event) == EventReply {
			s.unanswered.Store(0)
		}
		return
	}
	if string(f.topic) != c.cfg.Topic {
		c.log.Debug("ignoring frame for other topic")
		return
	}
	switch string(f.event) {
	case EventReply:
		s.handleReply(f)
	case EventClose:
		s.end(ErrClosedByServer)
	case EventError:
		// The channel crashed server-side; the portal then drains the
		// socket, so we wait for that instead of acting (as connlib).
		c.log.Warn("portal reported a channel error (phx_error)")
	case EventDisconnect:
		if reasonOf(f.payload) == ReasonTokenExpired {
			s.end(fmt.Errorf("%w: portal sent disconnect (token_expired)", ErrInvalidToken))
			return
		}
		fallthrough
	default:
		c.emit(s.ctx, &Message{Topic: c.cfg.Topic, Event: string(f.event), Payload: bytes.Clone(f.payload)})
	}
}

func (s *session) handleReply(f *rawFrame) {
	c := s.c
	ref, refOK := parseRef(f.ref)
	status, response, err := replyPayload(f.payload)
	if err != nil {
		c.badFrames.Add(1)
		c.log.Debug("dropping malformed reply", zap.Error(err))
		return
	}
	ok := string(status) == StatusOK
	if refOK && s.awaitingJoin.Load() && ref == s.joinRef.Load() {
		s.awaitingJoin.Store(false)
		select {
		case s.joinReply <- joinResult{ok: ok, response: bytes.Clone(response)}:
		default:
			return
		}
		// Wait until Joined is out, so no Message overtakes it.
		select {
		case <-s.joinDone:
		case <-s.ctx.Done():
		}
		return
	}
	var rerr *ReplyError
	if !ok {
		rerr = &ReplyError{Reason: reasonOf(response), Response: bytes.Clone(response)}
		if rerr.Reason == ReasonUnmatchedTopic {
			select {
			case s.rejoin <- struct{}{}:
			default:
			}
		}
	}
	if !refOK {
		return
	}
	s.mu.Lock()
	p, found := s.pending[ref]
	if found {
		delete(s.pending, ref)
	}
	event := ""
	if r := s.recent[ref%uint64(len(s.recent))]; r.ref == ref {
		event = r.event
	}
	s.mu.Unlock()
	switch {
	case found && rerr != nil:
		p.fn(nil, rerr)
	case found:
		p.fn(response, nil)
	case rerr != nil:
		c.log.Debug("push failed", zap.String("event", event), zap.String("reason", rerr.Reason))
		c.emit(s.ctx, &PushFailed{Event: event, Ref: ref, Err: rerr})
	}
}
