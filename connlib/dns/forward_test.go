package dns

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// fakeClock is a manually advanced Clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

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

type origin struct {
	app netip.AddrPort
	n   int
}

var (
	upstream1 = netip.MustParseAddrPort("1.1.1.1:53")
	upstream2 = netip.MustParseAddrPort("[2606:4700:4700::1111]:53")
	gwDNS     = netip.MustParseAddrPort("100.64.0.9:53535")
)

// reply builds the server's answer to a forwarded query.
func reply(t testing.TB, forwarded []byte, mutate func(*mdns.Msg)) []byte {
	t.Helper()
	q := unpack(t, forwarded)
	m := new(mdns.Msg)
	m.SetReply(q)
	m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: q.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: []byte{93, 184, 216, 34}})
	if mutate != nil {
		mutate(m)
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPendingRoundTrip(t *testing.T) {
	clk := newFakeClock()
	p := NewPending[origin](PendingConfig{Clock: clk})
	app := origin{app: netip.MustParseAddrPort("100.72.0.1:40000"), n: 1}

	q := mkQuery(t, "www.Example.org", mdns.TypeA, 0x1234)
	if err := p.Track(q, upstream1, app); err != nil {
		t.Fatal(err)
	}
	if p.Len() != 1 {
		t.Fatalf("Len %d", p.Len())
	}
	newID := binary.BigEndian.Uint16(q)
	resp := reply(t, q, nil)
	if binary.BigEndian.Uint16(resp) != newID {
		t.Fatal("test reply lost the ID")
	}
	// From the wrong server: not ours.
	if _, err := p.Match(append([]byte(nil), resp...), upstream2); !errors.Is(err, ErrUnknownResponse) {
		t.Errorf("wrong server: %v", err)
	}
	got, err := p.Match(resp, upstream1)
	if err != nil || got != app {
		t.Fatalf("Match: %+v %v", got, err)
	}
	m := unpack(t, resp)
	if m.Id != 0x1234 || len(m.Answer) != 1 || m.Question[0].Name != "www.Example.org." {
		t.Errorf("reply for the app: %v", m)
	}
	// A duplicate is unknown now.
	if _, err := p.Match(resp, upstream1); !errors.Is(err, ErrUnknownResponse) {
		t.Errorf("duplicate: %v", err)
	}
	if p.Len() != 0 {
		t.Errorf("Len %d", p.Len())
	}
	if _, ok := p.PollTimeout(); ok {
		t.Error("PollTimeout with nothing pending")
	}
}

func TestPendingSameAppIDsKeptApart(t *testing.T) {
	p := NewPending[origin](PendingConfig{Clock: newFakeClock()})
	// Two applications use the same query ID and name.
	q1 := mkQuery(t, "a.example.org", mdns.TypeA, 7)
	q2 := mkQuery(t, "a.example.org", mdns.TypeA, 7)
	_ = p.Track(q1, upstream1, origin{n: 1})
	_ = p.Track(q2, upstream1, origin{n: 2})
	if binary.BigEndian.Uint16(q1) == binary.BigEndian.Uint16(q2) {
		t.Fatal("same upstream ID for two pending queries")
	}
	r2, r1 := reply(t, q2, nil), reply(t, q1, nil)
	if o, err := p.Match(r2, upstream1); err != nil || o.n != 2 {
		t.Errorf("second: %+v %v", o, err)
	}
	if o, err := p.Match(r1, upstream1); err != nil || o.n != 1 {
		t.Errorf("first: %+v %v", o, err)
	}
	if binary.BigEndian.Uint16(r1) != 7 || binary.BigEndian.Uint16(r2) != 7 {
		t.Error("IDs not restored")
	}
}

func TestPendingRejectsMismatch(t *testing.T) {
	p := NewPending[int](PendingConfig{Clock: newFakeClock()})
	q := mkQuery(t, "a.example.org", mdns.TypeA, 1)
	_ = p.Track(q, gwDNS, 1)
	for name, b := range map[string][]byte{
		"other name":           reply(t, q, func(m *mdns.Msg) { m.Question[0].Name = "b.example.org." }),
		"other type":           reply(t, q, func(m *mdns.Msg) { m.Question[0].Qtype = mdns.TypeAAAA }),
		"no question, NOERROR": reply(t, q, func(m *mdns.Msg) { m.Question = nil }),
		"short":                reply(t, q, nil)[:11],
		"query not response":   q,
	} {
		if _, err := p.Match(b, gwDNS); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	// Case changes (0x20) and a question-less error response are accepted.
	ok := reply(t, q, func(m *mdns.Msg) { m.Question[0].Name = "A.EXAMPLE.ORG." })
	if v, err := p.Match(ok, gwDNS); err != nil || v != 1 {
		t.Errorf("case-changed reply: %v", err)
	}
	q2 := mkQuery(t, "b.example.org", mdns.TypeA, 2)
	_ = p.Track(q2, gwDNS, 2)
	refused := reply(t, q2, func(m *mdns.Msg) { m.Question = nil; m.Rcode = mdns.RcodeRefused; m.Answer = nil })
	if v, err := p.Match(refused, gwDNS); err != nil || v != 2 {
		t.Errorf("REFUSED without question: %v", err)
	}
	if err := p.Track([]byte{1, 2, 3}, gwDNS, 3); err == nil {
		t.Error("garbage tracked")
	}
}

func TestPendingTimeoutWithFakeClock(t *testing.T) {
	clk := newFakeClock()
	p := NewPending[int](PendingConfig{Clock: clk, Timeout: 2 * time.Second})
	start := clk.Now()
	qa := mkQuery(t, "a.example.org", mdns.TypeA, 0xaaaa)
	_ = p.Track(qa, upstream1, 1)
	clk.Advance(time.Second)
	qb := mkQuery(t, "b.example.org", mdns.TypeAAAA, 0xbbbb)
	_ = p.Track(qb, upstream1, 2)
	qc := mkQuery(t, "c.example.org", mdns.TypeA, 0xcccc)
	_ = p.Track(qc, upstream1, 3)
	// c is answered; it must not time out later.
	if _, err := p.Match(reply(t, qc, nil), upstream1); err != nil {
		t.Fatal(err)
	}

	if d, ok := p.PollTimeout(); !ok || !d.Equal(start.Add(2*time.Second)) {
		t.Fatalf("PollTimeout = %v %v", d, ok)
	}
	var expired []int
	check := func(o int, servfail []byte) {
		m := unpack(t, servfail)
		wantID := map[int]uint16{1: 0xaaaa, 2: 0xbbbb}[o]
		if m.Rcode != mdns.RcodeServerFailure || m.Id != wantID || !m.Response || len(m.Question) != 1 {
			t.Errorf("SERVFAIL for %d: %v", o, m)
		}
		expired = append(expired, o)
	}
	clk.Advance(999 * time.Millisecond)
	p.Expire(check)
	if len(expired) != 0 {
		t.Fatalf("expired early: %v", expired)
	}
	clk.Advance(time.Millisecond)
	p.Expire(check)
	if len(expired) != 1 || expired[0] != 1 {
		t.Fatalf("after 2s: %v", expired)
	}
	if d, ok := p.PollTimeout(); !ok || !d.Equal(start.Add(3*time.Second)) {
		t.Fatalf("next PollTimeout = %v %v", d, ok)
	}
	clk.Advance(10 * time.Second)
	p.Expire(check)
	if len(expired) != 2 || expired[1] != 2 || p.Len() != 0 {
		t.Fatalf("after 12s: %v, Len %d", expired, p.Len())
	}
	// A late answer is unknown.
	if _, err := p.Match(reply(t, qa, nil), upstream1); !errors.Is(err, ErrUnknownResponse) {
		t.Errorf("late answer: %v", err)
	}
}

func TestPendingLimitsAndCancel(t *testing.T) {
	clk := newFakeClock()
	p := NewPending[int](PendingConfig{Clock: clk, MaxPending: 3})
	for i := range 3 {
		if err := p.Track(mkQuery(t, "x.org", mdns.TypeA, uint16(i)), upstream1, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Track(mkQuery(t, "x.org", mdns.TypeA, 9), upstream1, 9); !errors.Is(err, ErrTooManyPending) {
		t.Errorf("over limit: %v", err)
	}
	if n := p.CancelIf(func(o int) bool { return o != 1 }); n != 2 || p.Len() != 1 {
		t.Errorf("CancelIf = %d, Len %d", n, p.Len())
	}
	clk.Advance(time.Minute)
	var got []int
	p.Expire(func(o int, _ []byte) { got = append(got, o) })
	if len(got) != 1 || got[0] != 1 {
		t.Errorf("expired %v", got)
	}
}

// TestPendingSteadyState checks the queue does not grow without bound and a
// track/match cycle does not allocate once warmed up.
func TestPendingSteadyState(t *testing.T) {
	clk := newFakeClock()
	p := NewPending[int](PendingConfig{Clock: clk, Timeout: time.Second})
	q := mkQuery(t, "a.example.org", mdns.TypeA, 5)
	resp := reply(t, q, nil)
	cycle := func() {
		if err := p.Track(q, upstream1, 1); err != nil {
			t.Fatal(err)
		}
		binary.BigEndian.PutUint16(resp, binary.BigEndian.Uint16(q))
		if _, err := p.Match(resp, upstream1); err != nil {
			t.Fatal(err)
		}
		clk.Advance(100 * time.Millisecond)
		if _, ok := p.PollTimeout(); ok {
			t.Fatal("stale entry reported")
		}
	}
	for range 1000 {
		cycle()
	}
	if len(p.order) > 200 || len(p.entries) > 1 {
		t.Errorf("order %d entries %d", len(p.order), len(p.entries))
	}
	if n := testing.AllocsPerRun(500, cycle); n != 0 {
		t.Errorf("%v allocs per track/match", n)
	}
}
