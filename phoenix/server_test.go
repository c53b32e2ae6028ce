package phoenix

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// rawClient dials srv like a foreign client would.
type rawClient struct {
	c *websocket.Conn
}

func dialRaw(t *testing.T, base, query string, h http.Header) *rawClient {
	t.Helper()
	u := strings.Replace(base, "http://", "ws://", 1) + "/websocket"
	if query != "" {
		u += "?" + query
	}
	c, resp, err := websocket.Dial(ctxT(t), u, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("dial: %v (resp %v)", err, resp)
	}
	c.SetReadLimit(-1)
	t.Cleanup(func() { _ = c.CloseNow() })
	return &rawClient{c}
}

func (rc *rawClient) send(t *testing.T, s string) {
	t.Helper()
	if err := rc.c.Write(ctxT(t), websocket.MessageText, []byte(s)); err != nil {
		t.Fatal(err)
	}
}

func (rc *rawClient) expect(t *testing.T, want string) {
	t.Helper()
	_, b, err := rc.c.Read(ctxT(t))
	if err != nil {
		t.Fatalf("read (want %s): %v", want, err)
	}
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}

// readErr waits for the socket to end and returns the read error.
func (rc *rawClient) readErr(t *testing.T) error {
	t.Helper()
	for {
		_, _, err := rc.c.Read(ctxT(t))
		if err != nil {
			return err
		}
	}
}

func bearer(tok string) http.Header { return http.Header{"X-Authorization": {"Bearer " + tok}} }

type leaveLog struct {
	mu     sync.Mutex
	events []string
}

func (l *leaveLog) add(s string) { l.mu.Lock(); l.events = append(l.events, s); l.mu.Unlock() }
func (l *leaveLog) wait(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		if len(l.events) >= n {
			ev := append([]string(nil), l.events...)
			l.mu.Unlock()
			return ev
		}
		l.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("fewer than %d events", n)
	return nil
}

func TestServerV1Frames(t *testing.T) {
	var leaves leaveLog
	var chans = make(chan *Channel, 4)
	srv := NewServer(ServerConfig{Logger: testLogger(t), Authenticate: func(r *http.Request, token string) (any, error) {
		if token != "tok" {
			return nil, Unauthorized("invalid_token", "")
		}
		return "gw-7", nil
	}})
	srv.HandleTopic("gateway", HandlerFuncs{
		OnJoin: func(ch *Channel, payload json.RawMessage) (any, error) {
			if string(payload) != "null" {
				t.Errorf("join payload %s", payload)
			}
			if ch.Identity() != "gw-7" || ch.Params().Get("external_id") != "e" || ch.Params().Has("token") {
				t.Errorf("identity %v params %v", ch.Identity(), ch.Params())
			}
			if ch.Header().Get("User-Agent") != "test/1" || ch.Header().Get("X-Authorization") != "" {
				t.Errorf("headers %v", ch.Header())
			}
			_ = ch.Push("init", json.RawMessage(`{"a":1}`)) // must follow the join reply
			chans <- ch
			return nil, nil
		},
		OnEvent: func(ch *Channel, event string, p json.RawMessage, r *Replier) error {
			switch event {
			case "echo":
				return r.OK(p)
			case "quiet":
				return nil
			case "fail":
				return &ReplyError{Reason: "nope"}
			}
			return ErrUnknownEvent
		},
		OnLeave: func(ch *Channel, reason error) { leaves.add(reason.Error()) },
	})
	base := startServer(t, srv)
	h := bearer("tok")
	h.Set("User-Agent", "test/1")
	rc := dialRaw(t, base, "external_id=e&name=n&token=leak", h)

	rc.send(t, `{"topic":"phoenix","event":"heartbeat","payload":{},"ref":1}`)
	rc.expect(t, `{"topic":"phoenix","event":"phx_reply","ref":1,"payload":{"status":"ok","response":{}}}`)
	rc.send(t, `{"topic":"gateway","event":"echo","payload":{},"ref":2}`)
	rc.expect(t, `{"topic":"gateway","event":"phx_reply","ref":2,"payload":{"status":"error","response":{"reason":"unmatched topic"}}}`)
	rc.send(t, `{"topic":"nowhere","event":"phx_join","payload":{},"ref":3}`)
	rc.expect(t, `{"topic":"nowhere","event":"phx_reply","ref":3,"payload":{"status":"error","response":{"reason":"unmatched topic"}}}`)
	rc.send(t, `{"topic":"gateway","event":"phx_join","payload":null,"ref":4}`)
	rc.expect(t, `{"topic":"gateway","event":"phx_reply","ref":4,"payload":{"status":"ok","response":{}}}`)
	rc.expect(t, `{"topic":"gateway","event":"init","ref":null,"payload":{"a":1}}`)
	rc.send(t, `{"topic":"gateway","event":"echo","payload":{"x":[1]},"ref":5}`)
	rc.expect(t, `{"topic":"gateway","event":"phx_reply","ref":5,"payload":{"status":"ok","response":{"x":[1]}}}`)
	rc.send(t, `{"topic":"gateway","event":"whatever","payload":{},"ref":6}`)
	rc.expect(t, `{"topic":"gateway","event":"phx_reply","ref":6,"payload":{"status":"error","response":{"reason":"unknown_message"}}}`)
	rc.send(t, `{"topic":"gateway","event":"fail","payload":{},"ref":7}`)
	rc.expect(t, `{"topic":"gateway","event":"phx_reply","ref":7,"payload":{"status":"error","response":{"reason":"nope"}}}`)
	// Garbage and no-reply events produce nothing; the socket stays.
	rc.send(t, `{"topic":"gateway","event":"quiet","payload":{},"ref":8}`)
	rc.send(t, `not json`)
	rc.send(t, `{"topic":"gateway","event":"x","payload":{}}`)
	rc.send(t, `{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"9"}`)
	rc.expect(t, `{"topic":"phoenix","event":"phx_reply","ref":"9","payload":{"status":"ok","response":{}}}`)
	if srv.BadFrames() != 2 {
		t.Errorf("bad frames %d", srv.BadFrames())
	}
	ch := <-chans
	if err := ch.Close(); err != nil {
		t.Fatal(err)
	}
	rc.expect(t, `{"topic":"gateway","event":"phx_close","ref":4,"payload":{}}`)
	if got := leaves.wait(t, 1); !strings.Contains(got[0], "phx_close") {
		t.Errorf("leave %v", got)
	}
	if err := ch.Push("x", nil); !errors.Is(err, ErrChannelClosed) {
		t.Errorf("push after close: %v", err)
	}
	if ch.Context().Err() == nil {
		t.Error("channel context not cancelled")
	}
}

// TestServerV2LikeJSClient speaks as phoenix.js does (vsn=2.0.0, string
// refs, join_ref).
func TestServerV2LikeJSClient(t *testing.T) {
	var leaves leaveLog
	chans := make(chan *Channel, 2)
	srv := NewServer(ServerConfig{Logger: testLogger(t)})
	srv.HandleTopic("room:*", HandlerFuncs{
		OnJoin: func(ch *Channel, p json.RawMessage) (any, error) { chans <- ch; return nil, nil },
		OnEvent: func(ch *Channel, event string, p json.RawMessage, r *Replier) error {
			return r.OK(p)
		},
		OnLeave: func(ch *Channel, reason error) { leaves.add(reason.Error()) },
	})
	base := startServer(t, srv)
	rc := dialRaw(t, base, "vsn=2.0.0", nil)
	rc.send(t, `["1","1","room:lobby","phx_join",{}]`)
	rc.expect(t, `["1","1","room:lobby","phx_reply",{"status":"ok","response":{}}]`)
	rc.send(t, `[null,"2","phoenix","heartbeat",{}]`)
	rc.expect(t, `[null,"2","phoenix","phx_reply",{"status":"ok","response":{}}]`)
	rc.send(t, `["1","3","room:lobby","new_msg",{"body":"hi"}]`)
	rc.expect(t, `["1","3","room:lobby","phx_reply",{"status":"ok","response":{"body":"hi"}}]`)
	ch := <-chans
	if err := ch.Push("broadcast", map[string]string{"b": "c"}); err != nil {
		t.Fatal(err)
	}
	rc.expect(t, `["1",null,"room:lobby","broadcast",{"b":"c"}]`)
	rc.send(t, `["9","4","room:lobby","new_msg",{}]`) // stale join_ref
	rc.expect(t, `["9","4","room:lobby","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`)
	rc.send(t, `["1","5","room:lobby","phx_leave",{}]`)
	rc.expect(t, `["1","5","room:lobby","phx_reply",{"status":"ok","response":{}}]`)
	if got := leaves.wait(t, 1); got[0] != ErrLeft.Error() {
		t.Errorf("leave reason %v", got)
	}
	// Rejoin, then a duplicate join replaces the channel.
	rc.send(t, `["6","6","room:lobby","phx_join",{}]`)
	rc.expect(t, `["6","6","room:lobby","phx_reply",{"status":"ok","response":{}}]`)
	rc.send(t, `["7","7","room:lobby","phx_join",{}]`)
	rc.expect(t, `["7","7","room:lobby","phx_reply",{"status":"ok","response":{}}]`)
	if got := leaves.wait(t, 2); !strings.Contains(got[1], "rejoined") {
		t.Errorf("duplicate join leave %v", got)
	}
	// V1 frames are not V2 frames.
	rc.send(t, `{"topic":"phoenix","event":"heartbeat","payload":{},"ref":1}`)
	rc.send(t, `[null,"8","phoenix","heartbeat",{}]`)
	rc.expect(t, `[null,"8","phoenix","phx_reply",{"status":"ok","response":{}}]`)
}

func TestServerRefusals(t *testing.T) {
	srv := NewServer(ServerConfig{Logger: testLogger(t), Authenticate: func(r *http.Request, token string) (any, error) {
		switch token {
		case "":
			return nil, Unauthorized("missing_token", "no token given")
		case "busy":
			return nil, RateLimited(time.Second)
		case "boom":
			return nil, errors.New("database down")
		case "ok":
			return 1, nil
		}
		return nil, Unauthorized("invalid_token", "")
	}})
	srv.HandleTopic("gateway", HandlerFuncs{})
	base := startServer(t, srv)
	u := base + "/websocket"
	get := func(query string, h http.Header) (*http.Response, string) {
		req, _ := http.NewRequestWithContext(ctxT(t), "GET", u+query, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := get("", nil)
	if resp.StatusCode != 401 || resp.Header.Get("Content-Type") != "application/problem+json" ||
		body != `{"title":"Unauthorized","status":401,"detail":"no token given","code":"missing_token"}` {
		t.Errorf("missing token: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if resp, body = get("", bearer("wrong")); resp.StatusCode != 401 || !strings.Contains(body, `"code":"invalid_token"`) {
		t.Errorf("invalid token: %d %s", resp.StatusCode, body)
	}
	if resp, body = get("", bearer("busy")); resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(body, `"rate_limit"`) {
		t.Errorf("rate limit: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if resp, body = get("", bearer("boom")); resp.StatusCode != 500 || !strings.Contains(body, "unhandled_connect_error") || strings.Contains(body, "database") {
		t.Errorf("internal: %d %s", resp.StatusCode, body)
	}
	if resp, _ = get("?vsn=3.0.0", bearer("ok")); resp.StatusCode != 400 {
		t.Errorf("bad vsn: %d", resp.StatusCode)
	}
	// Both token sources work.
	dialRaw(t, base, "token=ok", nil)
	dialRaw(t, base, "", http.Header{"X-Authorization": {"  bearer ok "}})
}

func TestServerDropsSocketsThatNeverJoin(t *testing.T) {
	srv := NewServer(ServerConfig{Logger: testLogger(t), JoinTimeout: 100 * time.Millisecond})
	srv.HandleTopic("gateway", HandlerFuncs{})
	base := startServer(t, srv)
	rc := dialRaw(t, base, "", nil)
	rc.send(t, `{"topic":"phoenix","event":"heartbeat","payload":{},"ref":1}`) // not a join
	err := rc.readErr(t)
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("want close 1008, got %v", err)
	}
	// A joined socket outlives the join timeout.
	rc2 := dialRaw(t, base, "", nil)
	rc2.send(t, `{"topic":"gateway","event":"phx_join","payload":{},"ref":0}`)
	rc2.expect(t, `{"topic":"gateway","event":"phx_reply","ref":0,"payload":{"status":"ok","response":{}}}`)
	time.Sleep(300 * time.Millisecond)
	rc2.send(t, `{"topic":"phoenix","event":"heartbeat","payload":{},"ref":1}`)
	rc2.expect(t, `{"topic":"phoenix","event":"phx_reply","ref":1,"payload":{"status":"ok","response":{}}}`)
}

func TestServerIdleTimeout(t *testing.T) {
	var leaves leaveLog
	srv := NewServer(ServerConfig{Logger: testLogger(t), IdleTimeout: 150 * time.Millisecond})
	srv.HandleTopic("gateway", HandlerFuncs{OnLeave: func(ch *Channel, r error) { leaves.add(r.Error()) }})
	base := startServer(t, srv)
	rc := dialRaw(t, base, "", nil)
	rc.send(t, `{"topic":"gateway","event":"phx_join","payload":{},"ref":0}`)
	rc.expect(t, `{"topic":"gateway","event":"phx_reply","ref":0,"payload":{"status":"ok","response":{}}}`)
	if err := rc.readErr(t); err == nil {
		t.Fatal("idle socket kept")
	}
	if got := leaves.wait(t, 1); got[0] != ErrSocketClosed.Error() {
		t.Errorf("leave %v", got)
	}
}

func TestServerOversizeFrameClosesCleanly(t *testing.T) {
	srv := NewServer(ServerConfig{Logger: testLogger(t), MaxFrameSize: 1024})
	srv.HandleTopic("gateway", HandlerFuncs{})
	base := startServer(t, srv)
	rc := dialRaw(t, base, "", nil)
	rc.send(t, `{"topic":"gateway","event":"phx_join","payload":{},"ref":0}`)
	rc.expect(t, `{"topic":"gateway","event":"phx_reply","ref":0,"payload":{"status":"ok","response":{}}}`)
	rc.send(t, `{"topic":"gateway","event":"x","ref":1,"payload":"`+strings.Repeat("A", 4096)+`"}`)
	if err := rc.readErr(t); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("want close 1009, got %v", err)
	}
	// The server is fine afterwards.
	rc2 := dialRaw(t, base, "", nil)
	rc2.send(t, `{"topic":"phoenix","event":"heartbeat","payload":{},"ref":1}`)
	rc2.expect(t, `{"topic":"phoenix","event":"phx_reply","ref":1,"payload":{"status":"ok","response":{}}}`)
}

func TestServerClose(t *testing.T) {
	srv := NewServer(ServerConfig{Logger: testLogger(t)})
	srv.HandleTopic("gateway", HandlerFuncs{})
	base := startServer(t, srv)
	rc := dialRaw(t, base, "", nil)
	rc.send(t, `{"topic":"gateway","event":"phx_join","payload":{},"ref":0}`)
	rc.expect(t, `{"topic":"gateway","event":"phx_reply","ref":0,"payload":{"status":"ok","response":{}}}`)
	if srv.NumSockets() != 1 {
		t.Errorf("sockets %d", srv.NumSockets())
	}
	srv.Close()
	if err := rc.readErr(t); err == nil {
		t.Fatal("socket survived Close")
	}
	u := strings.Replace(base, "http://", "ws://", 1) + "/websocket"
	_, resp, err := websocket.Dial(context.Background(), u, nil)
	if err == nil || resp == nil || resp.StatusCode != 503 {
		t.Fatalf("dial after Close: %v %v", err, resp)
	}
}
