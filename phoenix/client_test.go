package phoenix

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func newTestClient(t *testing.T, cfg ClientConfig) *Client {
	t.Helper()
	if cfg.Topic == "" {
		cfg.Topic = "gateway"
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestClientExactFrames checks the handshake, the frames of reference
// §4.2 byte for byte, and that nothing is pipelined before the join reply.
func TestClientExactFrames(t *testing.T) {
	rs := newRawServer(t)
	clk := newFakeClock()
	c := newTestClient(t, ClientConfig{
		URL: rs.base, Token: " tok ", UserAgent: "Ubuntu/24.04 gateway/1.6.1 (x86_64; 6.8.0)", Clock: clk,
		Params: func() []Param { return []Param{{"external_id", "e1"}, {"name", "n 1"}, {"public_key", "K+/="}} },
	})
	if err := c.Push("early", nil, nil); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("push before Run: %v", err)
	}
	runClient(t, c)
	rc := rs.accept(t)
	if got := rc.req.Header.Get("X-Authorization"); got != "Bearer tok" {
		t.Errorf("X-Authorization %q", got)
	}
	if got := rc.req.Header.Get("User-Agent"); got != "Ubuntu/24.04 gateway/1.6.1 (x86_64; 6.8.0)" {
		t.Errorf("User-Agent %q", got)
	}
	if rc.req.URL.Path != "/gateway/v2/websocket" || rc.req.URL.RawQuery != "external_id=e1&name=n+1&public_key=K%2B%2F%3D" {
		t.Errorf("URL %s", rc.req.URL)
	}
	if got := rc.read(t); got != `{"topic":"gateway","event":"phx_join","payload":null,"ref":0}` {
		t.Fatalf("join frame %s", got)
	}
	// Until the reply: pushes fail and nothing else goes out.
	if err := c.Push("x", json.RawMessage(`{}`), nil); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("push before join reply: %v", err)
	}
	rc.expectNone(t, 200*time.Millisecond)
	rc.send(t, joinOK)
	if j := nextEvent[*Joined](t, c, nil); string(j.Response) != `{}` {
		t.Errorf("join response %s", j.Response)
	}
	if c.State() != StateJoined {
		t.Errorf("state %v", c.State())
	}
	if err := c.Push("authorization_created", json.RawMessage(`{"ref":"SFMyNTY"}`), nil); err != nil {
		t.Fatal(err)
	}
	if got := rc.read(t); got != `{"topic":"gateway","event":"authorization_created","payload":{"ref":"SFMyNTY"},"ref":1}` {
		t.Fatalf("push frame %s", got)
	}
	clk.waitTimer(t, DefaultHeartbeatInterval)
	clk.Advance(DefaultHeartbeatInterval)
	if got := rc.read(t); got != `{"topic":"phoenix","event":"heartbeat","payload":{},"ref":2}` {
		t.Fatalf("heartbeat frame %s", got)
	}
	rc.send(t, `{"topic":"phoenix","event":"phx_reply","ref":2,"payload":{"status":"ok","response":{}}}`)
	// Garbage is dropped and counted; the connection stays.
	rc.send(t, `{"topic":"gateway","event":`)
	rc.send(t, `{"topic":"gateway","event":"init","ref":null,"payload":{"interface":{"ipv4":"100.64.0.1"}}}`)
	m := nextEvent[*Message](t, c, nil)
	if m.Event != "init" || string(m.Payload) != `{"interface":{"ipv4":"100.64.0.1"}}` {
		t.Fatalf("message %+v", m)
	}
	if c.BadFrames() != 1 {
		t.Errorf("bad frames %d", c.BadFrames())
	}
	// An error reply to a push without callback is reported.
	if err := c.Push("bogus", nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := rc.read(t); got != `{"topic":"gateway","event":"bogus","payload":null,"ref":3}` {
		t.Fatalf("push frame %s", got)
	}
	rc.send(t, `{"topic":"gateway","event":"phx_reply","ref":3,"payload":{"status":"error","response":{"reason":"unknown_message"}}}`)
	pf := nextEvent[*PushFailed](t, c, nil)
	if pf.Event != "bogus" || pf.Ref != 3 || pf.Err.Reason != ReasonUnknownMessage {
		t.Fatalf("push failed %+v", pf)
	}
	// phx_error is tolerated: the channel stays joined.
	rc.send(t, `{"topic":"gateway","event":"phx_error","ref":0,"payload":{}}`)
	if err := c.Push("after_error", nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := rc.read(t); !strings.Contains(got, `"after_error"`) {
		t.Fatalf("frame %s", got)
	}
	if n := rs.attempts.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestClient401IsFatal(t *testing.T) {
	for _, tc := range []struct {
		name, body, code string
	}{
		{"invalid_token", `{"title":"Unauthorized","status":401,"detail":"bad","code":"invalid_token"}`, "invalid_token"},
		{"missing_token", `{"title":"Unauthorized","status":401,"code":"missing_token"}`, "missing_token"},
		{"no body", ``, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := newRawServer(t)
			rs.setRefuse(func(w http.ResponseWriter, r *http.Request) bool {
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = w.Write([]byte(tc.body))
				return true
			})
			c := newTestClient(t, ClientConfig{URL: rs.base, Token: "SECRET-TOKEN", Clock: newFakeClock()})
			var err error
			select {
			case err = <-runClient(t, c):
			case <-time.After(testTimeout):
				t.Fatal("Run did not return")
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("err %v, want ErrInvalidToken", err)
			}
			var he *HTTPError
			if !errors.As(err, &he) || he.Status != 401 || he.Code != tc.code {
				t.Fatalf("HTTPError %+v", he)
			}
			if !strings.Contains(err.Error(), "token") || strings.Contains(err.Error(), "SECRET-TOKEN") {
				t.Errorf("message %q must say token and not contain it", err)
			}
			if n := rs.attempts.Load(); n != 1 {
				t.Errorf("%d attempts, want 1 (fatal, no retry)", n)
			}
		})
	}
}

func TestClient503RetryAfter(t *testing.T) {
	rs := newRawServer(t)
	rs.setRefuse(func(w http.ResponseWriter, r *http.Request) bool {
		if rs.attempts.Load() > 1 {
			return false
		}
		RateLimited(3 * time.Second).write(w)
		return true
	})
	clk := newFakeClock()
	c := newTestClient(t, ClientConfig{URL: rs.base, Clock: clk})
	runClient(t, c)
	sc := nextEvent[*StateChange](t, c, isState(StateReconnecting))
	if d := sc.NextAttempt.Sub(clk.Now()); d != 3*time.Second {
		t.Fatalf("next attempt in %v, want Retry-After 3s", d)
	}
	var he *HTTPError
	if !errors.As(sc.Err, &he) || he.Status != 503 || he.Code != "rate_limit" || errors.Is(sc.Err, ErrInvalidToken) {
		t.Fatalf("err %v", sc.Err)
	}
	clk.Advance(3 * time.Second)
	rc := rs.accept(t)
	rc.read(t)
	rc.send(t, joinOK)
	nextEvent[*Joined](t, c, nil)
}

// TestClientFirstConnectGivesUp: before any join, 1 s steps for 15 s.
func TestClientFirstConnectGivesUp(t *testing.T) {
	rs := newRawServer(t)
	rs.setRefuse(func(w http.ResponseWriter, r *http.Request) bool {
		w.WriteHeader(http.StatusInternalServerError)
		return true
	})
	clk := newFakeClock()
	c := newTestClient(t, ClientConfig{URL: rs.base, Clock: clk})
	done := runClient(t, c)
	start := clk.Now()
	for {
		select {
		case err := <-done:
			if !errors.Is(err, ErrMaxRetriesReached) {
				t.Fatalf("err %v", err)
			}
			if n := rs.attempts.Load(); n != 16 {
				t.Errorf("%d attempts, want 16 (t=0..15 s)", n)
			}
			if el := clk.Now().Sub(start); el != 15*time.Second {
				t.Errorf("gave up after %v", el)
			}
			return
		case ev := <-c.Events():
			sc, ok := ev.(*StateChange)
			if !ok || sc.State != StateReconnecting {
				continue
			}
			if d := sc.NextAttempt.Sub(clk.Now()); d != time.Second {
				t.Fatalf("delay %v, want 1s", d)
			}
			clk.Advance(time.Second)
		case <-time.After(testTimeout):
			t.Fatal("timeout")
		}
	}
}
