package phoenix

import (
	"encoding/json"
	"net/http"
	"testing"
)

func TestClientServerSmoke(t *testing.T) {
	srv := NewServer(ServerConfig{
		Logger: testLogger(t),
		Authenticate: func(r *http.Request, token string) (any, error) {
			if token != "secret" {
				return nil, Unauthorized("invalid_token", "bad")
			}
			return "gw-1", nil
		},
	})
	srv.HandleTopic("gateway", HandlerFuncs{
		OnJoin: func(ch *Channel, _ json.RawMessage) (any, error) {
			if err := ch.Push("init", map[string]any{"id": ch.Identity(), "pk": ch.Params().Get("public_key")}); err != nil {
				t.Errorf("push: %v", err)
			}
			return nil, nil
		},
		OnEvent: func(ch *Channel, event string, p json.RawMessage, r *Replier) error {
			if event == "echo" {
				return r.OK(p)
			}
			return ErrUnknownEvent
		},
	})
	base := startServer(t, srv)
	c, err := NewClient(ClientConfig{URL: base, Token: "secret", Topic: "gateway", Logger: testLogger(t),
		Params: func() []Param { return []Param{{"public_key", "PK"}} }})
	if err != nil {
		t.Fatal(err)
	}
	runClient(t, c)
	nextEvent[*Joined](t, c, nil)
	m := nextEvent[*Message](t, c, nil)
	if m.Event != "init" || string(m.Payload) != `{"id":"gw-1","pk":"PK"}` {
		t.Fatalf("init = %s %s", m.Event, m.Payload)
	}
	resp, err := c.Request(ctxT(t), "echo", json.RawMessage(`{"a":1}`))
	if err != nil || string(resp) != `{"a":1}` {
		t.Fatalf("echo = %s, %v", resp, err)
	}
	_, err = c.Request(ctxT(t), "nope", nil)
	if re, ok := err.(*ReplyError); !ok || re.Reason != ReasonUnknownMessage {
		t.Fatalf("unknown event reply = %v", err)
	}
}
