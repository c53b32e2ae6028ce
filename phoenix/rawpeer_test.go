package phoenix

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// rawServer is a scripted WebSocket server for asserting the client's
// exact frames. Every accepted connection is handed to the test.
type rawServer struct {
	base     string
	conns    chan *rawConn
	attempts atomic.Int32
	// refuse, if set, may answer the upgrade itself (returns true).
	refuse atomic.Pointer[func(w http.ResponseWriter, r *http.Request) bool]
}

type rawConn struct {
	c      *websocket.Conn
	req    *http.Request
	frames chan string
	closed chan struct{}
}

func newRawServer(t *testing.T) *rawServer {
	t.Helper()
	rs := &rawServer{conns: make(chan *rawConn, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs.attempts.Add(1)
		if f := rs.refuse.Load(); f != nil && (*f)(w, r) {
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		c.SetReadLimit(-1)
		rc := &rawConn{c: c, req: r, frames: make(chan string, 1000), closed: make(chan struct{})}
		go func() {
			defer close(rc.closed)
			for {
				_, b, err := c.Read(ctx)
				if err != nil {
					return
				}
				select {
				case rc.frames <- string(b):
				default:
				}
			}
		}()
		rs.conns <- rc
	}))
	t.Cleanup(func() { cancel(); hs.Close() })
	rs.base = hs.URL + "/gateway/v2"
	return rs
}

func (rs *rawServer) setRefuse(f func(w http.ResponseWriter, r *http.Request) bool) {
	rs.refuse.Store(&f)
}

func (rs *rawServer) accept(t *testing.T) *rawConn {
	t.Helper()
	select {
	case rc := <-rs.conns:
		t.Cleanup(func() { _ = rc.c.CloseNow() })
		return rc
	case <-time.After(testTimeout):
		t.Fatal("no connection from the client")
		return nil
	}
}

func (rc *rawConn) read(t *testing.T) string {
	t.Helper()
	select {
	case f := <-rc.frames:
		return f
	case <-time.After(testTimeout):
		t.Fatal("no frame from the client")
		return ""
	}
}

// expectNone asserts that no frame arrives within d.
func (rc *rawConn) expectNone(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case f := <-rc.frames:
		t.Fatalf("unexpected frame %s", f)
	case <-time.After(d):
	}
}

func (rc *rawConn) send(t *testing.T, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := rc.c.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

const joinOK = `{"topic":"gateway","event":"phx_reply","ref":0,"payload":{"status":"ok","response":{}}}`
