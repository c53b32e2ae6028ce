package dns

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

func TestReverseAddr(t *testing.T) {
	for _, s := range []string{"1.2.3.4", "100.96.0.1", "255.0.10.200", "fd00:2021:1111:8000::1", "2001:db8::567:89ab"} {
		rev, _ := mdns.ReverseAddr(s)
		got, ok := reverseAddr([]byte(rev[:len(rev)-1]))
		if !ok || got != netip.MustParseAddr(s) {
			t.Errorf("reverseAddr(%s) = %v %v", rev, got, ok)
		}
	}
	for _, s := range []string{"1.2.3.in-addr.arpa", "0.1.2.3.4.in-addr.arpa", "256.1.1.1.in-addr.arpa", "1..1.1.in-addr.arpa",
		"1.2.3.4.ip6.arpa", "a.in-addr.arpa", "x.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
		"00.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa", "example.com", "1111.in-addr.arpa"} {
		if got, ok := reverseAddr([]byte(s)); ok {
			t.Errorf("reverseAddr(%q) = %v, want failure", s, got)
		}
	}
}

func TestTCPFraming(t *testing.T) {
	r := newTestResolver(t, Resource{ID: "r", Address: "a.example.com"})
	q := mkQuery(t, "a.example.com", mdns.TypeA, 0x1234)
	framed, _ := AppendTCPFrame(nil, q)
	res, err := r.HandleQuery(TransportTCP, framed, make([]byte, MaxResponseSize))
	if err != nil || res.Action != ActionRespond {
		t.Fatal(res.Action, err)
	}
	msg, rest, ok := ReadTCPFrame(res.Response)
	if !ok || len(rest) != 0 {
		t.Fatalf("response is not one TCP frame")
	}
	m := unpack(t, msg)
	checkEcho(t, m, "a.example.com", mdns.TypeA)
	if len(m.Answer) != 4 || string(res.Query) != string(q) {
		t.Errorf("answers %d", len(m.Answer))
	}
	// Forward decisions hand back the unframed query.
	fq, _ := AppendTCPFrame(nil, mkQuery(t, "other.org", mdns.TypeA, 9))
	if res, err := r.HandleQuery(TransportTCP, fq, make([]byte, MaxResponseSize)); err != nil || string(res.Query) != string(fq[2:]) {
		t.Errorf("forwarded TCP query: %v", err)
	}
	for _, bad := range [][]byte{nil, {0}, {0, 5, 1, 2}, append([]byte{0, 1}, q...)} {
		if res, err := r.HandleQuery(TransportTCP, bad, make([]byte, MaxResponseSize)); !errors.Is(err, ErrShortMessage) || res.Action != ActionDrop {
			t.Errorf("bad frame %x: %v %v", bad, res.Action, err)
		}
	}
	if _, _, ok := ReadTCPFrame([]byte{0, 10, 1}); ok {
		t.Error("partial frame accepted")
	}
}

func TestMalformedQueries(t *testing.T) {
	r := newTestResolver(t, Resource{ID: "r", Address: "a.example.com"})
	out := make([]byte, MaxResponseSize)
	good := mkQuery(t, "a.example.com", mdns.TypeA, 0x1234)

	drop := map[string][]byte{
		"empty":    nil,
		"short":    good[:11],
		"response": func() []byte { b := append([]byte(nil), good...); b[2] |= 0x80; return b }(),
	}
	for name, b := range drop {
		res, err := r.HandleQuery(TransportUDP, b, out)
		if res.Action != ActionDrop || err == nil {
			t.Errorf("%s: %v %v, want drop", name, res.Action, err)
		}
	}

	formerr := map[string][]byte{
		"no question":        func() []byte { b := append([]byte(nil), good[:12]...); b[5] = 0; return b }(),
		"two questions":      func() []byte { b := append([]byte(nil), good...); b[5] = 2; return b }(),
		"truncated question": good[:len(good)-2],
		"pointer in qname":   append(append([]byte(nil), good[:12]...), 0xc0, 0x0c, 0, 1, 0, 1),
		"label past end":     append(append([]byte(nil), good[:12]...), 40, 'a'),
		"bad additional":     func() []byte { b := append([]byte(nil), good...); b[11] = 1; return b }(),
	}
	for name, b := range formerr {
		res, err := r.HandleQuery(TransportUDP, b, out)
		if err != nil || res.Action != ActionRespond {
			t.Fatalf("%s: %v %v", name, res.Action, err)
		}
		m := unpack(t, res.Response)
		if m.Rcode != mdns.RcodeFormatError || m.Id != 0x1234 || !m.Response {
			t.Errorf("%s: %v", name, m)
		}
	}

	notify := new(mdns.Msg)
	notify.SetNotify("example.com.")
	notify.Id = 0x1234
	b, _ := notify.Pack()
	res, err := r.HandleQuery(TransportUDP, b, out)
	if err != nil || res.Action != ActionRespond || unpack(t, res.Response).Rcode != mdns.RcodeNotImplemented {
		t.Errorf("NOTIFY: %v %v", res.Action, err)
	}

	if res, err := r.HandleQuery(TransportUDP, good, make([]byte, 30)); !errors.Is(err, ErrShortBuffer) || res.Action != ActionDrop {
		t.Errorf("short out: %v %v", res.Action, err)
	}
	if st := r.Stats(); st.Malformed != uint64(len(formerr)) || st.Dropped != uint64(len(drop)+1) {
		t.Errorf("stats %+v", st)
	}
}

func rawQuery(labels ...int) []byte {
	b := []byte{0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, l := range labels {
		b = append(b, byte(l))
		for range l {
			b = append(b, 'a')
		}
	}
	return append(b, 0, 0, 1, 0, 1)
}

func TestNameLengthLimits(t *testing.T) {
	r := newTestResolver(t, Resource{ID: "r", Address: "**"})
	out := make([]byte, MaxResponseSize)
	// 255 bytes on the wire: the longest legal name.
	res, err := r.HandleQuery(TransportUDP, rawQuery(63, 63, 63, 61), out)
	if err != nil || res.Action != ActionRespond || len(unpack(t, res.Response).Answer) != 4 {
		t.Fatalf("longest name: %v %v", res.Action, err)
	}
	// 256 bytes: FORMERR.
	res, err = r.HandleQuery(TransportUDP, rawQuery(63, 63, 63, 62), out)
	if err != nil || res.Action != ActionRespond || unpack(t, res.Response).Rcode != mdns.RcodeFormatError {
		t.Fatalf("overlong name: %v %v", res.Action, err)
	}
	// A single label too long to expand with the search domain is matched as is.
	search := strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 60) + "." + strings.Repeat("e", 15) + ".com" // 202 bytes
	r2, err := NewResolver(Config{SearchDomain: search})
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.SetResources([]Resource{{ID: "r", Address: "**." + search}}); err != nil {
		t.Fatal(err)
	}
	if res, _ := ask(t, r2, "short", mdns.TypeA); res.Action != ActionRespond {
		t.Errorf("short label: %v", res.Action)
	}
	if res, _ := ask(t, r2, strings.Repeat("x", 63), mdns.TypeA); res.Action != ActionForwardUpstream {
		t.Errorf("overlong expansion: %v", res.Action)
	}
}

func TestErrorReply(t *testing.T) {
	m := new(mdns.Msg)
	m.SetQuestion("www.Example.org.", mdns.TypeMX)
	m.Id = 0x1234
	m.SetEdns0(1232, true)
	q, _ := m.Pack()
	out := make([]byte, MaxResponseSize)
	b, err := ErrorReply(TransportUDP, q, out, mdns.RcodeServerFailure)
	if err != nil {
		t.Fatal(err)
	}
	resp := unpack(t, b)
	checkEcho(t, resp, "www.Example.org", mdns.TypeMX)
	if resp.Rcode != mdns.RcodeServerFailure || resp.IsEdns0() == nil || !resp.IsEdns0().Do() {
		t.Errorf("%v", resp)
	}
	framed, _ := AppendTCPFrame(nil, q)
	b, err = ErrorReply(TransportTCP, framed, out, mdns.RcodeRefused)
	if msg, _, ok := ReadTCPFrame(b); err != nil || !ok || unpack(t, msg).Rcode != mdns.RcodeRefused {
		t.Errorf("tcp: %v", err)
	}
	if b, err := ErrorReply(TransportUDP, q[:14], out, mdns.RcodeServerFailure); err != nil || unpack(t, b).Rcode != mdns.RcodeServerFailure {
		t.Errorf("broken question: %v", err)
	}
	if _, err := ErrorReply(TransportUDP, q[:5], out, 2); !errors.Is(err, ErrShortMessage) {
		t.Errorf("short: %v", err)
	}
	if _, err := ErrorReply(TransportUDP, q, out[:20], 2); !errors.Is(err, ErrShortBuffer) {
		t.Errorf("short out: %v", err)
	}
}

func TestSplitTCPFramePipelined(t *testing.T) {
	r := newTestResolver(t, Resource{ID: "r", Address: "*.example.com"})
	var stream []byte
	for _, n := range []string{"a.example.com", "b.example.com", "c.example.org"} {
		stream, _ = AppendTCPFrame(stream, mkQuery(t, n, mdns.TypeA, 0x1234))
	}
	stream = append(stream, 0) // start of a fourth frame
	var actions []Action
	for {
		frame, rest, ok := SplitTCPFrame(stream)
		if !ok {
			break
		}
		res, err := r.HandleQuery(TransportTCP, frame, make([]byte, MaxResponseSize))
		if err != nil {
			t.Fatal(err)
		}
		actions = append(actions, res.Action)
		stream = rest
	}
	if fmt.Sprint(actions) != "[respond respond forward-upstream]" || len(stream) != 1 {
		t.Errorf("actions %v, left %d", actions, len(stream))
	}
}

// TestInPlaceReply: the reply may overwrite the query in its own buffer.
func TestInPlaceReply(t *testing.T) {
	r := newTestResolver(t, Resource{ID: "r", Address: "*.example.com"})
	for _, tr := range []Transport{TransportUDP, TransportTCP} {
		for _, qt := range []uint16{mdns.TypeA, mdns.TypeAAAA} {
			m := new(mdns.Msg)
			m.SetQuestion("App.example.com.", qt)
			m.Id = 0x1234
			m.SetEdns0(1232, true)
			q, _ := m.Pack()
			if tr == TransportTCP {
				q, _ = AppendTCPFrame(nil, q)
			}
			buf := make([]byte, MaxResponseSize)
			n := copy(buf, q)
			res, err := r.HandleQuery(tr, buf[:n], buf)
			if err != nil || res.Action != ActionRespond {
				t.Fatal(res.Action, err)
			}
			msg := res.Response
			if tr == TransportTCP {
				msg, _, _ = ReadTCPFrame(msg)
			}
			resp := unpack(t, msg)
			checkEcho(t, resp, "App.example.com", qt)
			if len(resp.Answer) != 4 || resp.IsEdns0() == nil {
				t.Errorf("%v %d: %v", tr, qt, resp)
			}
		}
	}
}
