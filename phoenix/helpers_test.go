package phoenix

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// testTimeout bounds every wait in the tests; generous for loaded CI.
const testTimeout = 20 * time.Second

func testLogger(t *testing.T) *zap.Logger {
	if testing.Verbose() {
		return zaptest.NewLogger(t)
	}
	return zap.NewNop()
}

// startServer serves srv on a loopback httptest server and returns the
// portal base URL (http://127.0.0.1:port/gateway/v2).
func startServer(t testing.TB, srv *Server) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/gateway/v2/websocket", srv)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() { srv.Close(); hs.Close() })
	return hs.URL + "/gateway/v2"
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// runClient starts c.Run and returns a channel with its result; the
// client is stopped at cleanup.
func runClient(t *testing.T, c *Client) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() { defer close(exited); done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(testTimeout):
			t.Error("client Run did not return after cancel")
		}
	})
	return done
}

// nextEvent waits for an event matching pred, skipping others.
func nextEvent[T Event](t *testing.T, c *Client, pred func(T) bool) T {
	t.Helper()
	deadline := time.After(testTimeout)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				var zero T
				t.Fatalf("events closed while waiting for %T", zero)
			}
			if e, ok := ev.(T); ok && (pred == nil || pred(e)) {
				return e
			}
		case <-deadline:
			var zero T
			t.Fatalf("timeout waiting for %T", zero)
		}
	}
}

func isState(s State) func(*StateChange) bool {
	return func(e *StateChange) bool { return e.State == s }
}

func compactJSON(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad JSON %q: %v", s, err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func hasPrefix(s, p string) bool { return strings.HasPrefix(s, p) }
