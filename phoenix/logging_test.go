package phoenix

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestTokensNeverLogged runs a join, a refused connect and a legacy
// token-in-URL connect with debug logging and searches every log entry,
// fields included, for the token.
func TestTokensNeverLogged(t *testing.T) {
	const secret = "SFMyNTY.secret-token-value"
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	srv := NewServer(ServerConfig{Logger: log, Authenticate: func(r *http.Request, token string) (any, error) {
		if token == secret {
			return "ok", nil
		}
		return nil, Unauthorized("invalid_token", "")
	}})
	srv.HandleTopic("gateway", HandlerFuncs{})
	base := startServer(t, srv)

	c := newTestClient(t, ClientConfig{URL: base, Token: secret, Logger: log})
	runClient(t, c)
	nextEvent[*Joined](t, c, nil)

	// Legacy: token in the URL, refused (wrong header token wins) → fatal.
	c2 := newTestClient(t, ClientConfig{URL: base + "?token=" + secret, Token: "wrong", Logger: log})
	if err := <-runClient(t, c2); err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("err %v", err)
	}
	// Unreachable URL with the token in it: the dial error must not leak it.
	c3 := newTestClient(t, ClientConfig{URL: "http://127.0.0.1:1/x?token=" + secret, Logger: log, Clock: newFakeClock()})
	runClient(t, c3)
	sc := nextEvent[*StateChange](t, c3, isState(StateReconnecting))
	if sc.Err == nil || strings.Contains(sc.Err.Error(), secret) {
		t.Fatalf("dial error %v", sc.Err)
	}

	if logs.Len() == 0 {
		t.Fatal("nothing logged; the test would prove nothing")
	}
	for _, e := range logs.All() {
		line := e.Message + fmt.Sprint(e.ContextMap())
		if b, err := json.Marshal(e.ContextMap()); err == nil {
			line += string(b)
		}
		if strings.Contains(line, secret) || strings.Contains(line, "secret-token") {
			t.Errorf("token logged: %s", line)
		}
	}
}
