package phoenix

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sync"
)

// ChannelHandler serves one topic (see Server.HandleTopic). All three
// methods are called on the socket's reader goroutine, in order, never
// concurrently for one socket.
type ChannelHandler interface {
	// Join is called for phx_join. Return the response for the ok reply
	// (nil sends {}), or an error for an error reply: a *ReplyError gives
	// the reason/response, any other error is sent as {"reason":err.Error()}.
	// Pushes made from inside Join are sent after the join reply, as in
	// Phoenix (like sending :after_join to self).
	Join(ch *Channel, payload json.RawMessage) (response any, err error)
	// HandleIn is called for every other event on the joined topic. To
	// answer, call r.OK/r.Error (now or later, from any goroutine) and
	// return nil; returning nil without replying sends no reply (Phoenix's
	// {:noreply, socket}). Returning ErrUnknownEvent replies
	// {"reason":"unknown_message"} (the portal's answer to unknown events),
	// a *ReplyError replies with it, any other error replies
	// {"reason":err.Error()}.
	HandleIn(ch *Channel, event string, payload json.RawMessage, r *Replier) error
	// Leave is called once when a joined channel ends (never after a
	// refused Join), with ErrLeft (client
	// sent phx_leave), ErrClosedByServer (Channel.Close), ErrSocketClosed
	// or another error (socket ended abnormally, Crash).
	Leave(ch *Channel, reason error)
}

// HandlerFuncs adapts functions to ChannelHandler. A nil OnJoin accepts
// every join with {}; a nil OnEvent answers every event with
// unknown_message; a nil OnLeave does nothing.
type HandlerFuncs struct {
	OnJoin  func(ch *Channel, payload json.RawMessage) (any, error)
	OnEvent func(ch *Channel, event string, payload json.RawMessage, r *Replier) error
	OnLeave func(ch *Channel, reason error)
}

var _ ChannelHandler = HandlerFuncs{}

func (f HandlerFuncs) Join(ch *Channel, payload json.RawMessage) (any, error) {
	if f.OnJoin == nil {
		return nil, nil
	}
	return f.OnJoin(ch, payload)
}

func (f HandlerFuncs) HandleIn(ch *Channel, event string, payload json.RawMessage, r *Replier) error {
	if f.OnEvent == nil {
		return ErrUnknownEvent
	}
	return f.OnEvent(ch, event, payload, r)
}

func (f HandlerFuncs) Leave(ch *Channel, reason error) {
	if f.OnLeave != nil {
		f.OnLeave(ch, reason)
	}
}

// Channel is one joined topic on one socket, the server's view of a
// client. All methods are safe for concurrent use; after the channel ended
// Push, Close and Crash return ErrChannelClosed.
type Channel struct {
	sock    *socket
	topic   string
	joinRef []byte // raw JSON of the join's ref
	handler ChannelHandler
	ctx     context.Context
	cancel  context.CancelCauseFunc

	mu     sync.Mutex
	joined bool     // join reply sent
	early  [][]byte // pushes made during Join, sent after its reply
	ended  bool
}

// Topic returns the joined topic.
func (ch *Channel) Topic() string { return ch.topic }

// Identity returns what ServerConfig.Authenticate returned.
func (ch *Channel) Identity() any { return ch.sock.identity }

// Params returns a copy of the socket's connect query parameters (e.g.
// external_id, name, public_key) without any token.
func (ch *Channel) Params() url.Values { return cloneValues(ch.sock.params) }

// Header returns the upgrade request's headers (e.g. User-Agent) without
// X-Authorization, Authorization and Cookie. Do not modify it.
func (ch *Channel) Header() http.Header { return ch.sock.header }

// RemoteAddr is the client's address as http.Request.RemoteAddr.
func (ch *Channel) RemoteAddr() string { return ch.sock.remote }

// Context is cancelled when the channel ends; context.Cause says why.
func (ch *Channel) Context() context.Context { return ch.ctx }

// Push sends event to the client with ref null. payload is marshalled
// with encoding/json unless it is a json.RawMessage or []byte (sent as
// is, must be valid JSON); nil sends {}.
func (ch *Channel) Push(event string, payload any) error {
	raw, err := marshalPayload(payload)
	if err != nil {
		return err
	}
	frame := appendServerFrame(nil, ch.sock.v2, ch.topic, event, ch.joinRef, nil, raw)
	ch.mu.Lock()
	if ch.ended {
		ch.mu.Unlock()
		return ErrChannelClosed
	}
	if !ch.joined {
		ch.early = append(ch.early, frame)
		ch.mu.Unlock()
		return nil
	}
	ch.mu.Unlock()
	return ch.sock.write(frame)
}

// Close ends the channel with phx_close (Phoenix's graceful channel
// stop); the socket stays open. A Firezone client reconnects on it.
func (ch *Channel) Close() error {
	return ch.stop(EventClose, ErrClosedByServer)
}

// Crash ends the channel as a crashed Phoenix channel does: the client
// gets phx_error, the socket stays open, and the client's next push on the
// topic is answered "unmatched topic".
func (ch *Channel) Crash() error {
	return ch.stop(EventError, errors.New("phoenix: channel crashed (phx_error)"))
}

// Disconnect closes the whole socket (WebSocket close 1000), as the portal
// does to force a reconnect.
func (ch *Channel) Disconnect() {
	ch.sock.close()
}

func (ch *Channel) stop(event string, reason error) error {
	if !ch.sock.removeChannel(ch) {
		return ErrChannelClosed
	}
	frame := appendServerFrame(nil, ch.sock.v2, ch.topic, event, ch.joinRef, ch.joinRef, []byte("{}"))
	err := ch.sock.write(frame)
	ch.end(reason)
	return err
}

// end marks the channel ended and calls Leave once.
func (ch *Channel) end(reason error) {
	ch.mu.Lock()
	if ch.ended {
		ch.mu.Unlock()
		return
	}
	ch.ended = true
	ch.early = nil
	ch.mu.Unlock()
	ch.cancel(reason)
	ch.handler.Leave(ch, reason)
}

// markJoined sends the pushes made during Join; the join reply has been
// written.
func (ch *Channel) markJoined() {
	// Holding mu while flushing keeps a concurrent Push behind the early
	// pushes.
	ch.mu.Lock()
	defer ch.mu.Unlock()
	early := ch.early
	ch.early = nil
	ch.joined = true
	for _, f := range early {
		if ch.sock.write(f) != nil {
			return
		}
	}
}

func marshalPayload(payload any) ([]byte, error) {
	var raw []byte
	switch p := payload.(type) {
	case nil:
		return []byte("{}"), nil
	case json.RawMessage:
		raw = p
	case []byte:
		raw = p
	default:
		return json.Marshal(payload)
	}
	if len(raw) == 0 {
		return []byte("{}"), nil
	}
	if end, err := scanValue(raw, 0); err != nil || skipSpace(raw, end) != len(raw) {
		return nil, errBadPayload
	}
	return raw, nil
}

// Replier answers one incoming push. Its methods may be called from any
// goroutine; only the first reply is sent, later ones return an error.
type Replier struct {
	ch      *Channel
	topic   string
	joinRef []byte
	ref     []byte
	once    sync.Once
}

var errReplied = errors.New("phoenix: already replied")

// OK replies {"status":"ok","response":response} (nil response sends {}).
func (r *Replier) OK(response any) error { return r.Reply(StatusOK, response) }

// Error replies {"status":"error","response":{"reason":reason}}.
func (r *Replier) Error(reason string) error {
	return r.Reply(StatusError, map[string]string{"reason": reason})
}

// Reply sends a reply with any status.
func (r *Replier) Reply(status string, response any) error {
	raw, err := marshalPayload(response)
	if err != nil {
		return err
	}
	sent := false
	r.once.Do(func() { sent = true })
	if !sent {
		return errReplied
	}
	return r.ch.sock.reply(r.topic, r.joinRef, r.ref, status, raw)
}

// replyErr answers with an error derived from err (see HandleIn).
func (r *Replier) replyErr(err error) {
	var re *ReplyError
	switch {
	case errors.Is(err, ErrUnknownEvent):
		_ = r.Error(ReasonUnknownMessage)
	case errors.As(err, &re) && len(re.Response) > 0:
		_ = r.Reply(StatusError, re.Response)
	case errors.As(err, &re):
		_ = r.Error(re.Reason)
	default:
		_ = r.Error(err.Error())
	}
}
