package p2pcontrol

import "time"

// DefaultRetryInterval is how often an unanswered assigned_ips is resent
// (reference: every 2 s until answered).
const DefaultRetryInterval = 2 * time.Second

// Clock tells the time; tests inject a fake one. It has the same method set
// as connlib/dns.Clock, so one implementation serves both.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

var _ Clock = systemClock{}

func (systemClock) Now() time.Time { return time.Now() }

// RetryConfig configures a Retrier. The zero value is usable.
type RetryConfig struct {
	Clock    Clock         // nil: the system clock
	Interval time.Duration // 0: DefaultRetryInterval
}

// Retrier is the retry policy for events that are "retried until answered"
// (assigned_ips): Schedule a key, send whatever Due returns, and Ack the key
// when the answer (domain_status) arrives. K identifies one outstanding
// message, e.g. (gateway, resource, domain); scheduling a key again restarts
// it, so a changed assignment replaces the old one.
//
// Due and PollTimeout are O(n) in the number of outstanding keys, which is
// small (the names in use on one client).
//
// A Retrier is not safe for concurrent use; its owner's event loop calls it.
type Retrier[K comparable] struct {
	clock    Clock
	interval time.Duration
	next     map[K]time.Time
}

// NewRetrier returns an empty Retrier.
func NewRetrier[K comparable](cfg RetryConfig) *Retrier[K] {
	r := &Retrier[K]{clock: cfg.Clock, interval: cfg.Interval, next: make(map[K]time.Time)}
	if r.clock == nil {
		r.clock = systemClock{}
	}
	if r.interval <= 0 {
		r.interval = DefaultRetryInterval
	}
	return r
}

// Schedule makes key due now (the first send) and every interval after
// that until Ack or Cancel.
func (r *Retrier[K]) Schedule(key K) { r.next[key] = r.clock.Now() }

// Ack stops retrying key; it reports whether key was outstanding.
func (r *Retrier[K]) Ack(key K) bool {
	_, ok := r.next[key]
	delete(r.next, key)
	return ok
}

// Cancel stops retrying key without an answer (e.g. the connection closed).
func (r *Retrier[K]) Cancel(key K) { delete(r.next, key) }

// CancelIf cancels every key for which pred is true and returns how many.
func (r *Retrier[K]) CancelIf(pred func(K) bool) int {
	n := 0
	for k := range r.next {
		if pred(k) {
			delete(r.next, k)
			n++
		}
	}
	return n
}

// Outstanding reports whether key is still waiting for its answer.
func (r *Retrier[K]) Outstanding(key K) bool {
	_, ok := r.next[key]
	return ok
}

// Len returns the number of outstanding keys.
func (r *Retrier[K]) Len() int { return len(r.next) }

// Due appends to dst every key whose (re)send time has come and moves each
// one interval past now. Send a message for each returned key.
func (r *Retrier[K]) Due(dst []K) []K {
	now := r.clock.Now()
	for k, t := range r.next {
		if !t.After(now) {
			dst = append(dst, k)
			r.next[k] = now.Add(r.interval)
		}
	}
	return dst
}

// PollTimeout returns the earliest time Due will return something.
func (r *Retrier[K]) PollTimeout() (time.Time, bool) {
	var first time.Time
	found := false
	for _, t := range r.next {
		if !found || t.Before(first) {
			first, found = t, true
		}
	}
	return first, found
}
