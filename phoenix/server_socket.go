package phoenix

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"
)

// socket is one accepted WebSocket connection on the server.
type socket struct {
	srv      *Server
	conn     *websocket.Conn
	v2       bool
	identity any
	params   url.Values
	header   http.Header
	remote   string
	log      *zap.Logger
	ctx      context.Context
	cancel   context.CancelCauseFunc

	mu       sync.Mutex
	channels map[string]*Channel
	joined   bool // a channel was joined at least once
}

// serverWriteTimeout bounds one write to a client.
const serverWriteTimeout = 10 * time.Second

func (so *socket) write(frame []byte) error {
	ctx, cancel := context.WithTimeout(so.ctx, serverWriteTimeout)
	defer cancel()
	if err := so.conn.Write(ctx, websocket.MessageText, frame); err != nil {
		so.abort(fmt.Errorf("write: %w", err))
		return err
	}
	return nil
}

func (so *socket) reply(topic string, joinRef, ref []byte, status string, response []byte) error {
	payload := appendReplyPayload(nil, status, response)
	return so.write(appendServerFrame(nil, so.v2, topic, EventReply, joinRef, ref, payload))
}

// close ends the socket with a normal WebSocket close; the reader then
// ends the socket.
func (so *socket) close() {
	go func() { _ = so.conn.Close(websocket.StatusNormalClosure, "") }()
}

// abort drops the socket without a close handshake.
func (so *socket) abort(reason error) {
	so.cancel(reason)
	_ = so.conn.CloseNow()
}

func (so *socket) removeChannel(ch *Channel) bool {
	so.mu.Lock()
	defer so.mu.Unlock()
	if so.channels[ch.topic] != ch {
		return false
	}
	delete(so.channels, ch.topic)
	return true
}

// serve runs the read loop until the socket ends, then ends every channel.
func (so *socket) serve() {
	s := so.srv
	joinTimer := time.AfterFunc(s.cfg.JoinTimeout, func() {
		so.mu.Lock()
		joined := so.joined
		so.mu.Unlock()
		if !joined {
			so.log.Info("closing socket that never joined a channel")
			// No cancel first: cancelling the reader's context would drop
			// the TCP connection before the close frame is out.
			_ = so.conn.Close(websocket.StatusPolicyViolation, "join timeout")
		}
	})
	defer joinTimer.Stop()
	var buf bytes.Buffer
	for {
		if err := so.readOne(&buf); err != nil {
			so.log.Debug("socket closed", zap.Error(err))
			break
		}
	}
	so.cancel(ErrSocketClosed)
	_ = so.conn.CloseNow()
	so.mu.Lock()
	chans := make([]*Channel, 0, len(so.channels))
	for _, ch := range so.channels {
		chans = append(chans, ch)
	}
	clear(so.channels)
	so.mu.Unlock()
	for _, ch := range chans {
		ch.end(ErrSocketClosed)
	}
}

func (so *socket) readOne(buf *bytes.Buffer) error {
	ctx, cancel := context.WithTimeout(so.ctx, so.srv.cfg.IdleTimeout)
	defer cancel()
	typ, r, err := so.conn.Reader(ctx)
	if err != nil {
		return err
	}
	buf.Reset()
	if _, err := buf.ReadFrom(r); err != nil {
		return err
	}
	if typ != websocket.MessageText {
		// Phoenix V2 binary pushes are not supported; drop them.
		so.srv.badFrames.Add(1)
		return nil
	}
	f, err := decodeFrame(buf.Bytes(), so.v2)
	if err != nil {
		so.srv.badFrames.Add(1)
		so.log.Debug("dropping malformed frame", zap.Error(err), zap.Int("size", buf.Len()))
		return nil
	}
	so.handle(&f)
	return so.ctx.Err()
}

func (so *socket) handle(f *rawFrame) {
	topic := string(f.topic)
	event := string(f.event)
	ref := bytes.Clone(f.ref)
	joinRef := bytes.Clone(f.joinRef)
	if topic == TopicPhoenix && event == EventHeartbeat {
		_ = so.reply(topic, joinRef, ref, StatusOK, nil)
		return
	}
	switch event {
	case EventJoin:
		so.handleJoin(topic, ref, joinRef, f.payload)
		return
	case EventLeave:
		ch := so.lookup(topic, joinRef)
		if ch == nil || !so.removeChannel(ch) {
			so.unmatched(topic, joinRef, ref)
			return
		}
		_ = so.reply(topic, joinRef, ref, StatusOK, nil)
		ch.end(ErrLeft)
		return
	}
	ch := so.lookup(topic, joinRef)
	if ch == nil {
		so.unmatched(topic, joinRef, ref)
		return
	}
	r := &Replier{ch: ch, topic: topic, joinRef: joinRef, ref: ref}
	if err := ch.handler.HandleIn(ch, event, json.RawMessage(f.payload), r); err != nil {
		r.replyErr(err)
	}
}

func (so *socket) unmatched(topic string, joinRef, ref []byte) {
	so.log.Debug("message for a topic not joined", zap.String("topic", topic))
	_ = so.reply(topic, joinRef, ref, StatusError, []byte(`{"reason":"unmatched topic"}`))
}

// lookup finds the joined channel; with V2 the message's join_ref must be
// the channel's, as in Phoenix (V1 messages carry no join_ref).
func (so *socket) lookup(topic string, joinRef []byte) *Channel {
	so.mu.Lock()
	defer so.mu.Unlock()
	ch := so.channels[topic]
	if ch == nil {
		return nil
	}
	if joinRef != nil && !bytes.Equal(joinRef, ch.joinRef) && !refsEqual(joinRef, ch.joinRef) {
		return nil
	}
	return ch
}

// refsEqual compares refs that may differ only in being quoted.
func refsEqual(a, b []byte) bool {
	x, okx := parseRef(a)
	y, oky := parseRef(b)
	return okx && oky && x == y
}

func (so *socket) handleJoin(topic string, ref, joinRef, payload []byte) {
	h := so.srv.route(topic)
	if h == nil {
		so.unmatched(topic, joinRef, ref)
		return
	}
	so.mu.Lock()
	old := so.channels[topic]
	so.mu.Unlock()
	if old != nil && so.removeChannel(old) {
		// Phoenix closes the existing channel when a topic is joined
		// again on the same socket.
		so.log.Debug("duplicate join, closing the existing channel", zap.String("topic", topic))
		old.end(errors.New("phoenix: rejoined on the same socket"))
	}
	// The channel's join_ref is the join's ref (V1 has no join_ref field).
	chRef := joinRef
	if chRef == nil {
		chRef = ref
	}
	ctx, cancel := context.WithCancelCause(so.ctx)
	ch := &Channel{sock: so, topic: topic, joinRef: chRef, handler: h, ctx: ctx, cancel: cancel}
	so.mu.Lock()
	so.channels[topic] = ch
	so.mu.Unlock()
	resp, err := h.Join(ch, json.RawMessage(payload))
	if err != nil {
		so.removeChannel(ch)
		ch.mu.Lock()
		ch.ended, ch.early = true, nil
		ch.mu.Unlock()
		cancel(err)
		so.log.Info("join refused", zap.String("topic", topic), zap.Error(err))
		r := &Replier{ch: ch, topic: topic, joinRef: joinRef, ref: ref}
		r.replyErr(err)
		return
	}
	raw, err := marshalPayload(resp)
	if err != nil {
		raw = []byte("{}")
	}
	so.mu.Lock()
	so.joined = true
	so.mu.Unlock()
	if so.reply(topic, joinRef, ref, StatusOK, raw) != nil {
		return
	}
	ch.markJoined()
}
