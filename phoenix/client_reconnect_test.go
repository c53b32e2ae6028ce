package phoenix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// portal is a Server with a switchable refusal and records of what it saw.
type portal struct {
	srv     *Server
	base    string
	refuse  atomic.Bool
	auths   atomic.Int32
	joins   atomic.Int32
	mu      sync.Mutex
	chans   []*Channel
	keys    []string
	leaves  []error
	onJoin  func(ch *Channel) (any, error)
	onEvent func(ch *Channel, event string, p json.RawMessage, r *Replier) error
}

func newPortal(t *testing.T, setup func(p *portal)) *portal {
	t.Helper()
	p := &portal{}
	if setup != nil {
		setup(p)
	}
	p.srv = NewServer(ServerConfig{Logger: testLogger(t), Authenticate: func(r *http.Request, token string) (any, error) {
		p.auths.Add(1)
		return token, nil
	}})
	p.srv.HandleTopic("gateway", HandlerFuncs{
		OnJoin: func(ch *Channel, _ json.RawMessage) (any, error) {
			p.joins.Add(1)
			p.mu.Lock()
			p.chans = append(p.chans, ch)
			p.keys = append(p.keys, ch.Params().Get("public_key"))
			p.mu.Unlock()
			if p.onJoin != nil {
				return p.onJoin(ch)
			}
			return map[string]int{"n": int(p.joins.Load())}, nil
		},
		OnEvent: func(ch *Channel, event string, pl json.RawMessage, r *Replier) error {
			if p.onEvent != nil {
				return p.onEvent(ch, event, pl, r)
			}
			return ErrUnknownEvent
		},
		OnLeave: func(ch *Channel, reason error) {
			p.mu.Lock()
			p.leaves = append(p.leaves, reason)
			p.mu.Unlock()
		},
	})
	mux := http.NewServeMux()
	mux.HandleFunc("/gateway/v2/websocket", func(w http.ResponseWriter, r *http.Request) {
		if p.refuse.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		p.srv.ServeHTTP(w, r)
	})
	hs := httptest.NewServer(mux)
	t.Cleanup(func() { p.srv.Close(); hs.Close() })
	p.base = hs.URL + "/gateway/v2"
	return p
}

func (p *portal) lastChan() *Channel {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.chans[len(p.chans)-1]
}

// TestClientBackoffAfterJoin steps the exponential backoff with a fake
// clock: 500 ms ×1.5, reset by a successful join, bounded by
// MaxPartitionTime.
func TestClientBackoffAfterJoin(t *testing.T) {
	p := newPortal(t, nil)
	clk := newFakeClock()
	c := newTestClient(t, ClientConfig{URL: p.base, Clock: clk, Jitter: func() float64 { return 0.5 }, MaxPartitionTime: 5 * time.Second})
	done := runClient(t, c)
	nextEvent[*Joined](t, c, nil)

	delays := func(n int) []time.Duration {
		var ds []time.Duration
		for len(ds) < n {
			sc := nextEvent[*StateChange](t, c, isState(StateReconnecting))
			d := sc.NextAttempt.Sub(clk.Now())
			ds = append(ds, d)
			if len(ds) < n {
				clk.Advance(d)
			}
		}
		return ds
	}
	p.refuse.Store(true)
	p.lastChan().Disconnect()
	got := delays(2)
	want := []time.Duration{500 * time.Millisecond, 750 * time.Millisecond}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delays %v want %v", got, want)
	}
	p.refuse.Store(false)
	clk.Advance(got[1])
	nextEvent[*Joined](t, c, nil)

	// Reset: the next outage starts again at 500 ms, and gives up once
	// the 5 s partition budget would be exceeded.
	p.refuse.Store(true)
	p.lastChan().Disconnect()
	got = delays(4)
	want = []time.Duration{500 * time.Millisecond, 750 * time.Millisecond, 1125 * time.Millisecond, 1687500 * time.Microsecond}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delays %v want %v", got, want)
	}
	clk.Advance(got[3])
	select {
	case err := <-done:
		if !errors.Is(err, ErrMaxRetriesReached) {
			t.Fatalf("err %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run did not give up")
	}
}

func TestClientHeartbeatLossReconnects(t *testing.T) {
	rs := newRawServer(t)
	c := newTestClient(t, ClientConfig{URL: rs.base, HeartbeatInterval: 30 * time.Millisecond})
	runClient(t, c)
	rc1 := rs.accept(t)
	rc1.read(t)
	rc1.send(t, joinOK)
	nextEvent[*Joined](t, c, nil)
	// Never answer heartbeats: the client must give up on this socket.
	select {
	case <-rc1.closed:
	case <-time.After(testTimeout):
		t.Fatal("client kept a socket with unanswered heartbeats")
	}
	hb := 0
	for len(rc1.frames) > 0 {
		if f := <-rc1.frames; hasPrefix(f, `{"topic":"phoenix","event":"heartbeat"`) {
			hb++
		}
	}
	if hb <= maxMissedHeartbeats {
		t.Errorf("reconnected after %d heartbeats, want more than %d unanswered", hb, maxMissedHeartbeats)
	}
	sc := nextEvent[*StateChange](t, c, isState(StateReconnecting))
	if !errors.Is(sc.Err, ErrHeartbeatTimeout) {
		t.Errorf("reconnect reason %v", sc.Err)
	}
	rc2 := rs.accept(t)
	if got := rc2.read(t); got != `{"topic":"gateway","event":"phx_join","payload":null,"ref":0}` {
		t.Fatalf("rejoin frame %s (refs restart at 0 per connection)", got)
	}
	rc2.send(t, joinOK)
	nextEvent[*Joined](t, c, nil)
	// Answered heartbeats keep the socket.
	for range 8 {
		f := rc2.read(t)
		var m struct{ Ref int }
		_ = json.Unmarshal([]byte(f), &m)
		rc2.send(t, fmt.Sprintf(`{"topic":"phoenix","event":"phx_reply","ref":%d,"payload":{"status":"ok","response":{}}}`, m.Ref))
	}
	if n := rs.attempts.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

func TestClientJoinTimeoutReconnects(t *testing.T) {
	rs := newRawServer(t)
	clk := newFakeClock()
	c := newTestClient(t, ClientConfig{URL: rs.base, Clock: clk})
	runClient(t, c)
	rc := rs.accept(t)
	rc.read(t)
	clk.waitTimer(t, DefaultJoinTimeout)
	clk.Advance(DefaultJoinTimeout)
	sc := nextEvent[*StateChange](t, c, isState(StateReconnecting))
	if !errors.Is(sc.Err, ErrJoinTimeout) {
		t.Fatalf("err %v", sc.Err)
	}
	clk.Advance(time.Second)
	rc2 := rs.accept(t)
	rc2.read(t)
	rc2.send(t, joinOK)
	nextEvent[*Joined](t, c, nil)
}

func TestClientJoinErrorIsFatal(t *testing.T) {
	p := newPortal(t, func(p *portal) {
		p.onJoin = func(ch *Channel) (any, error) { return nil, &ReplyError{Reason: "invalid_version"} }
	})
	c := newTestClient(t, ClientConfig{URL: p.base})
	select {
	case err := <-runClient(t, c):
		var je *JoinError
		if !errors.Is(err, ErrLoginFailed) || !errors.As(err, &je) || je.Reason != "invalid_version" {
			t.Fatalf("err %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run did not return")
	}
}

func TestClientTokenExpiredIsFatal(t *testing.T) {
	p := newPortal(t, func(p *portal) {
		p.onJoin = func(ch *Channel) (any, error) {
			_ = ch.Push("disconnect", map[string]string{"reason": "token_expired"})
			return nil, nil
		}
	})
	c := newTestClient(t, ClientConfig{URL: p.base})
	select {
	case err := <-runClient(t, c):
		if !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("err %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run did not return")
	}
}

// TestClientUnmatchedTopicRejoins: after the channel crashed (phx_error,
// tolerated), the next push is answered "unmatched topic" and the client
// rejoins on the same socket.
func TestClientUnmatchedTopicRejoins(t *testing.T) {
	p := newPortal(t, func(p *portal) {
		p.onEvent = func(ch *Channel, event string, pl json.RawMessage, r *Replier) error { return r.OK(pl) }
	})
	c := newTestClient(t, ClientConfig{URL: p.base})
	runClient(t, c)
	nextEvent[*Joined](t, c, nil)
	if err := p.lastChan().Crash(); err != nil {
		t.Fatal(err)
	}
	_, err := c.Request(ctxT(t), "ping", json.RawMessage(`1`))
	var re *ReplyError
	if !errors.As(err, &re) || re.Reason != ReasonUnmatchedTopic {
		t.Fatalf("err %v", err)
	}
	j := nextEvent[*Joined](t, c, nil)
	if string(j.Response) != `{"n":2}` {
		t.Errorf("rejoin response %s", j.Response)
	}
	if resp, err := c.Request(ctxT(t), "ping", json.RawMessage(`2`)); err != nil || string(resp) != "2" {
		t.Fatalf("after rejoin: %s %v", resp, err)
	}
	if n := p.auths.Load(); n != 1 {
		t.Errorf("%d sockets, want the same one", n)
	}
}

func TestClientPhxCloseReconnectsWithFreshParams(t *testing.T) {
	p := newPortal(t, nil)
	var n atomic.Int32
	c := newTestClient(t, ClientConfig{URL: p.base, Params: func() []Param {
		return []Param{{"public_key", fmt.Sprint("K", n.Add(1))}}
	}})
	runClient(t, c)
	nextEvent[*Joined](t, c, nil)
	if err := p.lastChan().Close(); err != nil {
		t.Fatal(err)
	}
	sc := nextEvent[*StateChange](t, c, isState(StateReconnecting))
	if !errors.Is(sc.Err, ErrClosedByServer) {
		t.Errorf("reason %v", sc.Err)
	}
	if err := c.Push("x", nil, nil); !errors.Is(err, ErrNotConnected) {
		t.Errorf("push while reconnecting: %v", err)
	}
	nextEvent[*Joined](t, c, nil)
	p.mu.Lock()
	keys := fmt.Sprint(p.keys)
	p.mu.Unlock()
	if keys != "[K1 K2]" {
		t.Errorf("public keys per connection %s", keys)
	}
}

func TestClientRejoinsAfterServerRestart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	start := func(l net.Listener) (*Server, *httptest.Server, *atomic.Int32) {
		var joins atomic.Int32
		srv := NewServer(ServerConfig{Logger: testLogger(t)})
		srv.HandleTopic("gateway", HandlerFuncs{OnJoin: func(*Channel, json.RawMessage) (any, error) {
			joins.Add(1)
			return nil, nil
		}})
		hs := httptest.NewUnstartedServer(srv)
		hs.Listener.Close()
		hs.Listener = l
		hs.Start()
		return srv, hs, &joins
	}
	srv1, hs1, _ := start(ln)
	c := newTestClient(t, ClientConfig{URL: "http://" + addr + "/gateway/v2"})
	runClient(t, c)
	nextEvent[*Joined](t, c, nil)
	srv1.Close()
	hs1.Close()
	nextEvent[*StateChange](t, c, isState(StateReconnecting))
	var ln2 net.Listener
	for range 50 {
		if ln2, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("relisten on %s: %v", addr, err)
	}
	srv2, hs2, joins2 := start(ln2)
	t.Cleanup(func() { srv2.Close(); hs2.Close() })
	nextEvent[*Joined](t, c, nil)
	if joins2.Load() != 1 {
		t.Errorf("joins on the restarted server: %d", joins2.Load())
	}
}

// TestClientConcurrentRequests matches replies to pushes by ref while the
// server answers out of order.
func TestClientConcurrentRequests(t *testing.T) {
	p := newPortal(t, func(p *portal) {
		p.onEvent = func(ch *Channel, event string, pl json.RawMessage, r *Replier) error {
			pl = append(json.RawMessage(nil), pl...)
			go func() {
				time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
				_ = r.OK(pl)
			}()
			return nil
		}
	})
	c := newTestClient(t, ClientConfig{URL: p.base})
	runClient(t, c)
	nextEvent[*Joined](t, c, nil)
	go func() {
		for range c.Events() {
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				want := fmt.Sprintf(`{"g":%d,"i":%d}`, g, i)
				resp, err := c.Request(ctxT(t), "echo", json.RawMessage(want))
				if err != nil || string(resp) != want {
					errs <- fmt.Errorf("request %s: got %s, %v", want, resp, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestClientGracefulLeave(t *testing.T) {
	p := newPortal(t, nil)
	c := newTestClient(t, ClientConfig{URL: p.base})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	nextEvent[*Joined](t, c, nil)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run did not return")
	}
	deadline := time.Now().Add(testTimeout)
	for {
		p.mu.Lock()
		leaves := append([]error(nil), p.leaves...)
		p.mu.Unlock()
		if len(leaves) > 0 {
			if !errors.Is(leaves[0], ErrLeft) {
				t.Fatalf("leave reason %v, want ErrLeft", leaves[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server never saw the leave")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for range c.Events() {
	}
	if c.State() != StateClosed {
		t.Errorf("state %v", c.State())
	}
}

func TestClientV2(t *testing.T) {
	p := newPortal(t, func(p *portal) {
		p.onEvent = func(ch *Channel, event string, pl json.RawMessage, r *Replier) error { return r.OK(pl) }
	})
	c := newTestClient(t, ClientConfig{URL: p.base, Vsn: VsnV2, HeartbeatInterval: 20 * time.Millisecond})
	runClient(t, c)
	nextEvent[*Joined](t, c, nil)
	if resp, err := c.Request(ctxT(t), "x", json.RawMessage(`[1,"a"]`)); err != nil || string(resp) != `[1,"a"]` {
		t.Fatalf("%s %v", resp, err)
	}
	time.Sleep(300 * time.Millisecond) // ~15 heartbeats, all answered
	if p.auths.Load() != 1 || c.State() != StateJoined {
		t.Errorf("V2 heartbeats not answered: %d sockets, state %v", p.auths.Load(), c.State())
	}
}

func TestClientOversizeFrameReconnects(t *testing.T) {
	big := make([]byte, 4096)
	for i := range big {
		big[i] = 'a'
	}
	p := newPortal(t, func(p *portal) {
		p.onJoin = func(ch *Channel) (any, error) {
			if p.joins.Load() == 1 {
				_ = ch.Push("init", json.RawMessage(`"`+string(big)+`"`))
			}
			return nil, nil
		}
	})
	c := newTestClient(t, ClientConfig{URL: p.base, MaxFrameSize: 1024})
	runClient(t, c)
	nextEvent[*StateChange](t, c, isState(StateReconnecting))
	nextEvent[*Joined](t, c, nil)
	if p.auths.Load() != 2 {
		t.Errorf("sockets %d", p.auths.Load())
	}
}

func TestSessionDropsDuplicates(t *testing.T) {
	c := newTestClient(t, ClientConfig{URL: "ws://127.0.0.1:1/x", MaxQueue: 3})
	s := newSession(c, context.Background(), nil)
	s.joined = true
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.enqueue("a", []byte(`{"x":1}`), nil))
	must(s.enqueue("a", []byte(`{"x":1}`), nil)) // duplicate: dropped
	must(s.enqueue("a", []byte(`{"x":2}`), nil))
	if len(s.queue) != 2 {
		t.Fatalf("queue %d, want 2", len(s.queue))
	}
	var got error
	must(s.enqueue("a", []byte(`{"x":1}`), func(_ json.RawMessage, err error) { got = err })) // has a callback: kept
	if err := s.enqueue("b", nil, nil); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("full queue: %v", err)
	}
	s.failAll(ErrDisconnected)
	if !errors.Is(got, ErrDisconnected) || len(s.queue) != 0 {
		t.Fatalf("failAll: %v, %d left", got, len(s.queue))
	}
	if err := s.enqueue("a", nil, nil); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("after failAll: %v", err)
	}
}
