package phoenix

import (
	"testing"
	"time"
)

func TestBackoffFirstConnect(t *testing.T) {
	now := time.Unix(1000, 0)
	b := backoff{start: now, jitter: func() float64 { return 0.9 }}
	n := 0
	for {
		d, ok := b.next(now)
		if !ok {
			break
		}
		if d != time.Second {
			t.Fatalf("delay %d = %v, want constant 1s", n, d)
		}
		now = now.Add(d)
		n++
		if n > 100 {
			t.Fatal("never gave up")
		}
	}
	if n != 15 {
		t.Errorf("%d retries before giving up, want 15 (15 s budget)", n)
	}
}

func TestBackoffExponential(t *testing.T) {
	now := time.Unix(1000, 0)
	b := backoff{jitter: func() float64 { return 0.5 }}
	b.reset()
	want := 500 * time.Millisecond
	for i := range 20 {
		d, ok := b.next(now)
		if !ok {
			t.Fatal("gave up with unlimited partition time")
		}
		if d != want {
			t.Fatalf("step %d: %v want %v", i, d, want)
		}
		now = now.Add(d)
		want = min(time.Duration(float64(want)*1.5), 60*time.Second)
	}
	if want != 60*time.Second {
		t.Fatalf("never reached the 60 s cap: %v", want)
	}
	// Jitter spans ±50 %.
	lo := backoff{jitter: func() float64 { return 0 }}
	lo.reset()
	if d, _ := lo.next(now); d != 250*time.Millisecond {
		t.Errorf("min jitter %v want 250ms", d)
	}
	hi := backoff{jitter: func() float64 { return 0.999999999 }}
	hi.reset()
	if d, _ := hi.next(now); d < 749*time.Millisecond || d > 750*time.Millisecond {
		t.Errorf("max jitter %v want ~750ms", d)
	}
	// A reset starts over at 500 ms.
	b.reset()
	if d, _ := b.next(now); d != 500*time.Millisecond {
		t.Errorf("after reset %v", d)
	}
}

func TestBackoffMaxPartition(t *testing.T) {
	now := time.Unix(1000, 0)
	b := backoff{maxElapsed: 5 * time.Second, jitter: func() float64 { return 0.5 }}
	b.reset()
	var steps []time.Duration
	for {
		d, ok := b.next(now)
		if !ok {
			break
		}
		steps = append(steps, d)
		now = now.Add(d)
	}
	// 0.5 + 0.75 + 1.125 + 1.6875 = 4.0625 s; the next (2.53 s) would pass 5 s.
	if len(steps) != 4 {
		t.Fatalf("steps %v, want 4 within 5 s", steps)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"1": time.Second, " 30 ": 30 * time.Second, "": 0, "-5": 0, "x": 0, "99999": time.Hour,
		"Thu, 01 Jan 2026 00:00:10 GMT": 10 * time.Second,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("%q: %v want %v", in, got, want)
		}
	}
}
