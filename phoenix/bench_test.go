package phoenix

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// sinkServer joins the client and then counts (and discards) frames,
// reading into one reused buffer so the server side adds no allocations
// of its own to the figures.
type sinkServer struct {
	base   string
	frames atomic.Int64
	notify chan struct{} // signalled after each frame (capacity 1)
}

func newSinkServer(tb testing.TB) *sinkServer {
	ss := &sinkServer{notify: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		if _, _, err := c.Read(ctx); err != nil { // the join
			return
		}
		if c.Write(ctx, websocket.MessageText, []byte(joinOK)) != nil {
			return
		}
		// Reads use Background (no per-read AfterFunc allocations);
		// cleanup ends them by closing the connection.
		stop := context.AfterFunc(ctx, func() { c.CloseNow() })
		defer stop()
		buf := make([]byte, 64<<10)
		for {
			_, rd, err := c.Reader(context.Background())
			if err != nil {
				return
			}
			for {
				if _, err := rd.Read(buf); err != nil {
					if errors.Is(err, io.EOF) {
						break
					}
					return
				}
			}
			ss.frames.Add(1)
			select {
			case ss.notify <- struct{}{}:
			default:
			}
		}
	}))
	tb.Cleanup(func() { cancel(); hs.Close() })
	ss.base = hs.URL + "/gateway/v2"
	return ss
}

func startBenchClient(b *testing.B, base string) *Client {
	c, err := NewClient(ClientConfig{URL: base, Topic: "gateway", MaxQueue: 4096})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	for ev := range c.Events() {
		if _, ok := ev.(*Joined); ok {
			break
		}
	}
	go func() {
		for range c.Events() {
		}
	}()
	return c
}

// BenchmarkPush measures fire-and-forget pushes through one connection,
// end to end: the clock stops when the server has read every frame.
func BenchmarkPush(b *testing.B) {
	ss := newSinkServer(b)
	c := startBenchClient(b, ss.base)
	payload := make([]byte, 0, 128)
	b.ReportAllocs()
	b.ResetTimer()
	start := ss.frames.Load()
	for i := 0; i < b.N; i++ {
		// Distinct payloads, or the duplicate filter would drop them.
		payload = append(payload[:0], `{"resource_id":"73037362-715d-4a83-a749-f18eadd970e6","n":`...)
		payload = strconv.AppendInt(payload, int64(i), 10)
		payload = append(payload, '}')
		for {
			err := c.Push("authorization_created", payload, nil)
			if err == nil {
				break
			}
			if !errors.Is(err, ErrQueueFull) {
				b.Fatal(err)
			}
			runtime.Gosched()
		}
	}
	deadline := time.Now().Add(testTimeout)
	for ss.frames.Load()-start < int64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("server got %d of %d", ss.frames.Load()-start, b.N)
		}
		runtime.Gosched()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pushes/s")
}

// BenchmarkRequest measures a push and its reply (round trip) against
// this package's Server.
func BenchmarkRequest(b *testing.B) {
	srv := NewServer(ServerConfig{})
	srv.HandleTopic("gateway", HandlerFuncs{OnEvent: func(ch *Channel, ev string, p json.RawMessage, r *Replier) error {
		return r.OK(nil)
	}})
	hs := httptest.NewServer(srv)
	b.Cleanup(func() { srv.Close(); hs.Close() })
	c := startBenchClient(b, hs.URL+"/gateway/v2")
	ctx := context.Background()
	payload := json.RawMessage(`{"a":1}`)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Request(ctx, "x", payload); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
}

// TestPushAllocations is the allocation budget of the push path: queue,
// encode and WebSocket write of one push, measured one push at a time
// (each waits until the server has read it). Budget: 0 per push.
func TestPushAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation budget measured in full runs")
	}
	ss := newSinkServer(t)
	c := newTestClient(t, ClientConfig{URL: ss.base})
	runClient(t, c)
	nextEvent[*Joined](t, c, nil)
	go func() {
		for range c.Events() {
		}
	}()
	payload := make([]byte, 0, 64)
	n := int64(0)
	timeout := time.NewTimer(testTimeout)
	defer timeout.Stop()
	push := func() {
		payload = append(payload[:0], `{"n":`...)
		payload = strconv.AppendInt(payload, n, 10)
		payload = append(payload, '}')
		if err := c.Push("authorization_created", payload, nil); err != nil {
			t.Fatal(err)
		}
		n++
		// Block rather than spin: AllocsPerRun runs with GOMAXPROCS=1.
		for ss.frames.Load() < n {
			select {
			case <-ss.notify:
			case <-timeout.C:
				t.Fatal("push not received")
			}
		}
	}
	for range 100 { // warm up buffers
		push()
	}
	if allocs := testing.AllocsPerRun(500, push); allocs > 0 {
		t.Errorf("%v allocations per push, budget 0", allocs)
	}
}
