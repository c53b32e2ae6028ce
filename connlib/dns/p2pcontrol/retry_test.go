package p2pcontrol

import (
	"slices"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type key struct{ gateway, resource, domain string }

func TestRetrierTiming(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	start := clk.Now()
	r := NewRetrier[key](RetryConfig{Clock: clk})
	a := key{"gw1", "r1", "a.example.com"}
	b := key{"gw1", "r1", "b.example.com"}

	if _, ok := r.PollTimeout(); ok || len(r.Due(nil)) != 0 {
		t.Fatal("empty Retrier has work")
	}
	r.Schedule(a)
	if d, ok := r.PollTimeout(); !ok || !d.Equal(start) {
		t.Fatalf("first send not due now: %v", d)
	}
	if got := r.Due(nil); !slices.Equal(got, []key{a}) {
		t.Fatalf("Due = %v", got)
	}
	if got := r.Due(nil); len(got) != 0 {
		t.Fatalf("resent at once: %v", got)
	}
	if d, _ := r.PollTimeout(); !d.Equal(start.Add(2 * time.Second)) {
		t.Fatalf("retry at %v, want +2s", d.Sub(start))
	}

	clk.Advance(time.Second)
	r.Schedule(b)
	if got := r.Due(nil); !slices.Equal(got, []key{b}) {
		t.Fatalf("at +1s: %v", got)
	}
	clk.Advance(999 * time.Millisecond)
	if got := r.Due(nil); len(got) != 0 {
		t.Fatalf("at +1.999s: %v", got)
	}
	clk.Advance(time.Millisecond)
	if got := r.Due(nil); !slices.Equal(got, []key{a}) {
		t.Fatalf("at +2s: %v", got)
	}

	// Answered: no more retries for a; b keeps going every 2 s.
	if !r.Ack(a) || r.Ack(a) || r.Outstanding(a) {
		t.Fatal("Ack")
	}
	sends := 0
	for range 10 {
		clk.Advance(time.Second)
		for _, k := range r.Due(nil) {
			if k != b {
				t.Fatalf("unexpected %v", k)
			}
			sends++
		}
	}
	if sends != 5 {
		t.Errorf("b resent %d times in 10 s, want 5", sends)
	}
	// A late Due after a long pause sends once, not a burst.
	clk.Advance(time.Minute)
	if got := r.Due(nil); len(got) != 1 {
		t.Errorf("after a pause: %v", got)
	}
	if got := r.Due(nil); len(got) != 0 {
		t.Errorf("burst: %v", got)
	}
	// Re-scheduling restarts: due immediately.
	r.Schedule(b)
	if got := r.Due(nil); len(got) != 1 {
		t.Errorf("re-schedule: %v", got)
	}
	r.Cancel(b)
	if r.Len() != 0 {
		t.Errorf("Len %d", r.Len())
	}
}

func TestRetrierCancelIfAndInterval(t *testing.T) {
	clk := &fakeClock{now: time.Unix(0, 0)}
	r := NewRetrier[key](RetryConfig{Clock: clk, Interval: 500 * time.Millisecond})
	r.Schedule(key{"gw1", "r", "a"})
	r.Schedule(key{"gw2", "r", "b"})
	r.Schedule(key{"gw1", "r", "c"})
	r.Due(nil)
	if n := r.CancelIf(func(k key) bool { return k.gateway == "gw1" }); n != 2 || r.Len() != 1 {
		t.Fatalf("CancelIf %d, Len %d", n, r.Len())
	}
	clk.Advance(500 * time.Millisecond)
	if got := r.Due(nil); len(got) != 1 || got[0].gateway != "gw2" {
		t.Errorf("Due %v", got)
	}
	if NewRetrier[int](RetryConfig{}).interval != DefaultRetryInterval {
		t.Error("default interval")
	}
}
