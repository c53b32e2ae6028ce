package dns

import (
	"encoding/binary"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

// FuzzHandleQuery feeds arbitrary bytes to the stub and checks that every
// reply is a well-formed DNS response to the query it was given.
func FuzzHandleQuery(f *testing.F) {
	for _, s := range []struct {
		name  string
		qtype uint16
	}{{"app.example.com", mdns.TypeA}, {"x.corp.example.com", mdns.TypeAAAA}, {"x.corp.example.com", mdns.TypeTXT},
		{"www.example.org", mdns.TypeA}, {"gitlab", mdns.TypeA}, {"1.0.96.100.in-addr.arpa", mdns.TypePTR},
		{"use-application-dns.net", mdns.TypeA}, {"app.example.com", mdns.TypeHTTPS}} {
		m := new(mdns.Msg)
		m.SetQuestion(mdns.Fqdn(s.name), s.qtype)
		m.SetEdns0(1232, true)
		b, _ := m.Pack()
		f.Add(b, false)
		framed, _ := AppendTCPFrame(nil, b)
		f.Add(framed, true)
	}
	f.Add([]byte{}, false)
	f.Add(make([]byte, 12), false)

	r, err := NewResolver(Config{SearchDomain: "corp.example.com", MaxNames: 1000})
	if err != nil {
		f.Fatal(err)
	}
	if err := r.SetResources([]Resource{
		{ID: "a", Address: "*.example.com"},
		{ID: "b", Address: "**.corp.example.com", IPStack: IPStackIPv6Only},
		{ID: "c", Address: "app-??.example.com", IPStack: IPStackIPv4Only},
	}); err != nil {
		f.Fatal(err)
	}
	out := make([]byte, MaxResponseSize)
	f.Fuzz(func(t *testing.T, data []byte, tcp bool) {
		tr := TransportUDP
		if tcp {
			tr = TransportTCP
		}
		res, err := r.HandleQuery(tr, data, out)
		if (err != nil) != (res.Action == ActionDrop) {
			t.Fatalf("error %v with action %v", err, res.Action)
		}
		switch res.Action {
		case ActionForwardSite:
			if res.ResourceID == "" {
				t.Fatal("forward to site without resource")
			}
			fallthrough
		case ActionForwardUpstream:
			if res.Response != nil || len(res.Query) < headerLen {
				t.Fatal("forward with response or without query")
			}
		case ActionRespond:
			resp := res.Response
			if len(resp) > MaxResponseSize {
				t.Fatalf("response of %d bytes", len(resp))
			}
			if tcp {
				msg, rest, ok := ReadTCPFrame(resp)
				if !ok || len(rest) != 0 {
					t.Fatal("response is not one TCP frame")
				}
				resp = msg
			}
			m := new(mdns.Msg)
			if err := m.Unpack(resp); err != nil {
				t.Fatalf("response does not unpack: %v (%x)", err, resp)
			}
			if !m.Response || m.Id != binary.BigEndian.Uint16(res.Query) {
				t.Fatalf("bad header %+v", m.MsgHdr)
			}
			for _, rr := range m.Answer {
				switch v := rr.(type) {
				case *mdns.A:
					a, _ := netip.AddrFromSlice(v.A.To4())
					if !IsProxyIP(a) {
						t.Fatalf("A %v outside proxy range", a)
					}
				case *mdns.AAAA:
					a, _ := netip.AddrFromSlice(v.AAAA)
					if !IsProxyIP(a) {
						t.Fatalf("AAAA %v outside proxy range", a)
					}
				}
				if rr.Header().Ttl != TTL {
					t.Fatalf("TTL %d", rr.Header().Ttl)
				}
			}
		}
	})
}

// refMatch is an independent, regexp-based reading of the pattern rules:
// every label consumes "label." of name+".", "**" consumes any number of
// whole labels, and "*." patterns also match their parent.
func refMatch(pattern, name string) bool {
	pattern = strings.ToLower(strings.TrimSuffix(pattern, "."))
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	build := func(labels []string) *regexp.Regexp {
		var b strings.Builder
		b.WriteString("^")
		for _, l := range labels {
			if l == "**" {
				b.WriteString(`(?:[^.]+\.)*`)
				continue
			}
			for _, c := range l {
				switch c {
				case '*':
					b.WriteString(`[^.]*`)
				case '?':
					b.WriteString(`[^.]`)
				default:
					b.WriteString(regexp.QuoteMeta(string(c)))
				}
			}
			b.WriteString(`\.`)
		}
		b.WriteString("$")
		return regexp.MustCompile(b.String())
	}
	labels := strings.Split(pattern, ".")
	if build(labels).MatchString(name + ".") {
		return true
	}
	return len(labels) > 1 && labels[0] == "*" && build(labels[1:]).MatchString(name+".")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// FuzzPatternMatch compares Pattern.Match with refMatch.
func FuzzPatternMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"*.example.com", "example.com"}, {"**.example.com", "a.b.example.com"}, {"app.**.web.**.example.com", "app.web.example.com"},
		{"*?*.example.com", "app.example.com"}, {"a*b*c.x", "aXbYc.x"}, {"app-??.example.com", "APP-12.example.com."},
		{"**", "x"}, {"a.**", "a"}, {"x.*", "x"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		p, err := ParsePattern(pattern)
		if err != nil {
			return
		}
		got := p.Match(name)
		if got != p.matchBytes([]byte(name)) {
			t.Fatal("string and byte matchers disagree")
		}
		n := strings.TrimSuffix(name, ".")
		if !isASCII(pattern) || !isASCII(name) || n == "" || len(n) > maxNameLen ||
			strings.Contains(n, "..") || strings.HasPrefix(n, ".") || strings.HasSuffix(n, ".") ||
			strings.Count(n, ".") >= maxNameLabel {
			if got && (n == "" || strings.Contains(n, "..")) {
				t.Fatalf("%q matched malformed name %q", pattern, name)
			}
			return
		}
		if want := refMatch(pattern, name); got != want {
			t.Fatalf("%q.Match(%q) = %v, reference says %v", pattern, name, got, want)
		}
	})
}

// FuzzPendingMatch: arbitrary responses against a tracked query never panic
// and are only accepted when they carry the tracked ID and question.
func FuzzPendingMatch(f *testing.F) {
	q := mkQuery(f, "a.example.org", mdns.TypeA, 1)
	f.Add(q, []byte{})
	f.Add(q, append([]byte{0, 0, 0x81, 0x80}, q[4:]...))
	f.Add([]byte{1, 2}, []byte{1})
	f.Fuzz(func(t *testing.T, query, resp []byte) {
		p := NewPending[int](PendingConfig{Clock: newFakeClock()})
		query = append([]byte(nil), query...)
		if err := p.Track(query, upstream1, 1); err != nil {
			return
		}
		// Give the response the tracked ID so the question check is reached.
		if len(resp) >= 2 {
			resp = append([]byte(nil), resp...)
			copy(resp, query[:2])
		}
		if _, err := p.Match(resp, upstream1); err == nil {
			if p.Len() != 0 {
				t.Fatal("accepted but still pending")
			}
			if resp[2]&0x80 == 0 {
				t.Fatal("accepted a query as response")
			}
		}
	})
}
