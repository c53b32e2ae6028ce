package devportal

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/gozone/gozone/connlib/portal"
	"github.com/gozone/gozone/phoenix"
)

const waitFor = 20 * time.Second // generous: CI machines are slow and shared

// fakeClock is a manually stepped Clock.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c    *fakeClock
	at   time.Time
	f    func()
	done bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Stopper {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	return true
}

// Advance moves time and runs the timers that came due, in order.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	for _, t := range c.timers {
		if !t.done && !t.at.After(c.now) {
			t.done = true
			due = append(due, t)
		}
	}
	c.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

func newKey(t *testing.T) string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b[:])
}

func startPortal(t *testing.T, opts Options) *Portal {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(t)
	}
	if opts.RelayListen == "" {
		opts.RelayListen = "127.0.0.1:0"
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if _, err := p.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	return p
}

// device is a fake gateway or client: a real phoenix.Client over a real
// WebSocket, recording what the portal pushes.
type device struct {
	t      *testing.T
	c      *phoenix.Client
	key    string
	cancel context.CancelFunc
	done   chan error
	joined chan struct{}

	mu      sync.Mutex
	backlog []*phoenix.Message
	notify  chan struct{}
}

func connectDevice(t *testing.T, p *Portal, topic, token, externalID string) *device {
	t.Helper()
	path := "/gateway/v2"
	ua := portal.UserAgent(portal.OSInfo{Type: "Ubuntu", Version: "24.04", Arch: "x86_64", Kernel: "6.8.0"}, portal.ComponentGateway, "1.6.1")
	if topic == portal.TopicClient {
		path = "/client/v2"
		ua = portal.UserAgent(portal.OSInfo{Type: "Ubuntu", Version: "24.04", Arch: "x86_64", Kernel: "6.8.0"}, portal.ComponentHeadlessClient, "1.5.12")
	}
	d := &device{t: t, key: newKey(t), done: make(chan error, 1), joined: make(chan struct{}), notify: make(chan struct{}, 1)}
	c, err := phoenix.NewClient(phoenix.ClientConfig{
		URL: p.URL() + path, Token: token, UserAgent: ua, Topic: topic,
		Params: func() []phoenix.Param {
			return []phoenix.Param{{Key: "external_id", Value: externalID}, {Key: "name", Value: externalID}, {Key: "public_key", Value: d.key}}
		},
		Logger: zaptest.NewLogger(t).Named(externalID),
	})
	if err != nil {
		t.Fatal(err)
	}
	d.c = c
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() { d.done <- c.Run(ctx) }()
	go func() {
		once := sync.Once{}
		for ev := range c.Events() {
			switch ev := ev.(type) {
			case *phoenix.Joined:
				once.Do(func() { close(d.joined) })
			case *phoenix.Message:
				d.mu.Lock()
				d.backlog = append(d.backlog, ev)
				d.mu.Unlock()
				select {
				case d.notify <- struct{}{}:
				default:
				}
			}
		}
	}()
	t.Cleanup(d.stop)
	select {
	case <-d.joined:
	case err := <-d.done:
		t.Fatalf("%s did not join: %v", externalID, err)
	case <-time.After(waitFor):
		t.Fatalf("%s: join timed out", externalID)
	}
	return d
}

// stop disconnects the device and waits for its client to end.
func (d *device) stop() {
	d.cancel()
	select {
	case <-d.done:
		d.done <- nil // keep later stops from blocking
	case <-time.After(waitFor):
		d.t.Errorf("device did not stop")
	}
}

// expect waits for the next message with this event (other events stay
// queued for later expects) and returns its payload.
func (d *device) expect(event string) json.RawMessage {
	d.t.Helper()
	deadline := time.After(waitFor)
	for {
		d.mu.Lock()
		for i, m := range d.backlog {
			if m.Event == event {
				d.backlog = append(d.backlog[:i], d.backlog[i+1:]...)
				d.mu.Unlock()
				return m.Payload
			}
		}
		d.mu.Unlock()
		select {
		case <-d.notify:
		case <-deadline:
			d.mu.Lock()
			var got []string
			for _, m := range d.backlog {
				got = append(got, m.Event)
			}
			d.mu.Unlock()
			d.t.Fatalf("no %q within %v; queued: %v", event, waitFor, got)
		}
	}
}

// count returns how many queued messages have this event.
func (d *device) count(event string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, m := range d.backlog {
		if m.Event == event {
			n++
		}
	}
	return n
}

func (d *device) push(event string, payload any) {
	d.t.Helper()
	b, err := json.Marshal(payload)
	if err != nil {
		d.t.Fatal(err)
	}
	if err := d.c.Push(event, b, nil); err != nil {
		d.t.Fatalf("push %s: %v", event, err)
	}
}

func (d *device) request(event string, payload any) (json.RawMessage, error) {
	d.t.Helper()
	b, _ := json.Marshal(payload)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	return d.c.Request(ctx, event, b)
}

func decodeAs[T any](t *testing.T, dec func(string, []byte) (portal.Message, error), event string, raw json.RawMessage) *T {
	t.Helper()
	m, err := dec(event, raw)
	if err != nil {
		t.Fatalf("decode %s %s: %v", event, raw, err)
	}
	v, ok := m.Payload.(*T)
	if !ok {
		t.Fatalf("%s payload is %T", event, m.Payload)
	}
	return v
}

// waitUntil polls cond (bounded).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
