package phoenix

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

const fuzzMaxFrame = 4096

// FuzzServerFrames sends each input as a WebSocket text message to a live
// Server over loopback, followed by a heartbeat. The socket must either
// stay usable (the heartbeat is answered) or, for inputs over the size
// limit, be closed with 1009; a panic anywhere fails the run.
func FuzzServerFrames(f *testing.F) {
	for _, s := range []string{
		`{"topic":"gateway","event":"phx_join","payload":null,"ref":0}`,
		`{"topic":"gateway","event":"echo","payload":{"a":[1,2]},"ref":1}`,
		`{"topic":"gateway","event":"phx_leave","payload":{},"ref":2}`,
		`{"topic":"nowhere","event":"x","payload":1,"ref":"3"}`,
		`{"topic":"gateway","event":"x","payload":{},"ref":{"a":1}}`,
		`{"topic":"gateway","event":"phx_join","payload":null,"ref":0,"join_ref":[1]}`,
		`[null,"1","phoenix","heartbeat",{}]`,
		`{"topic":`,
		strings.Repeat("A", fuzzMaxFrame+10),
	} {
		f.Add([]byte(s))
	}
	// Long timeouts: a fuzz worker keeps one socket for minutes without joining.
	srv := NewServer(ServerConfig{MaxFrameSize: fuzzMaxFrame, JoinTimeout: time.Hour, IdleTimeout: time.Hour})
	srv.HandleTopic("gateway", HandlerFuncs{OnEvent: func(ch *Channel, ev string, p json.RawMessage, r *Replier) error {
		if ev == "echo" {
			return r.OK(p)
		}
		return ErrUnknownEvent
	}})
	base := startServer(f, srv)
	u := strings.Replace(base, "http://", "ws://", 1) + "/websocket"
	var conn *websocket.Conn
	dial := func(t *testing.T) {
		c, _, err := websocket.Dial(context.Background(), u, nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		c.SetReadLimit(-1)
		conn = c
	}
	ref := 0
	f.Fuzz(func(t *testing.T, data []byte) {
		if conn == nil {
			dial(t)
		}
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := conn.Write(ctx, websocket.MessageText, data); err != nil {
			t.Fatalf("write: %v", err)
		}
		ref++
		hb := fmt.Sprintf(`{"topic":"phoenix","event":"heartbeat","payload":{},"ref":%d}`, ref)
		want := fmt.Sprintf(`{"topic":"phoenix","event":"phx_reply","ref":%d,"payload":{"status":"ok","response":{}}}`, ref)
		werr := conn.Write(ctx, websocket.MessageText, []byte(hb))
		for range 100 {
			_, b, err := conn.Read(ctx)
			if err != nil {
				if len(data) > fuzzMaxFrame && websocket.CloseStatus(err) == websocket.StatusMessageTooBig {
					conn.CloseNow()
					conn = nil
					return
				}
				t.Fatalf("socket ended after %d-byte input: %v (heartbeat write: %v)", len(data), err, werr)
			}
			if string(b) == want {
				if len(data) > fuzzMaxFrame {
					t.Fatalf("%d-byte frame accepted over the %d limit", len(data), fuzzMaxFrame)
				}
				return
			}
		}
		t.Fatal("heartbeat reply not found")
	})
	if conn != nil {
		conn.CloseNow()
	}
}

// FuzzClientHandle feeds decoded frames to a joined client session's
// handler (replies, pushes, control events) and checks it never panics
// and never emits a Message for a control event.
func FuzzClientHandle(f *testing.F) {
	for _, s := range []string{
		`{"topic":"gateway","event":"phx_reply","ref":0,"payload":{"status":"ok","response":{}}}`,
		`{"topic":"gateway","event":"phx_reply","ref":"1","payload":{"status":"error","response":{"reason":"unmatched topic"}}}`,
		`{"topic":"gateway","event":"phx_reply","ref":2,"payload":{"status":7}}`,
		`{"topic":"gateway","event":"phx_close","ref":0,"payload":{}}`,
		`{"topic":"gateway","event":"disconnect","ref":null,"payload":{"reason":"token_expired"}}`,
		`{"topic":"gateway","event":"disconnect","ref":null,"payload":"x"}`,
		`{"topic":"phoenix","event":"phx_reply","ref":99999999999999999999999,"payload":null}`,
		`{"topic":"gateway","event":"init","ref":null,"payload":{"relays":[]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := decodeV1(data)
		if err != nil {
			return
		}
		c, err := NewClient(ClientConfig{URL: "ws://127.0.0.1:1/x", Topic: "gateway", EventBuffer: 16})
		if err != nil {
			t.Fatal(err)
		}
		s := newSession(c, context.Background(), nil)
		s.joined = true
		called := 0
		for i := range 3 {
			s.pending[uint64(i)] = pendingReply{fn: func(json.RawMessage, error) { called++ }}
		}
		s.awaitingJoin.Store(len(data)%2 == 0)
		close(s.joinDone) // as if join() had handled a join reply
		s.handle(&fr)
		s.end(nil)
		close(c.events)
		for ev := range c.events {
			if m, ok := ev.(*Message); ok && (m.Event == EventReply || m.Event == EventClose || m.Event == EventError) {
				t.Fatalf("control event %q surfaced as a Message", m.Event)
			}
		}
		if called > 1 {
			t.Fatalf("%d reply callbacks for one frame", called)
		}
	})
}
