package acl

import (
	"testing"
	"time"

	"github.com/gozone/gozone/connlib/ippacket"
)

// FuzzCheckBytes: arbitrary bytes from a client never panic the ACL or
// the tracker, and a verdict is always one of the defined ones.
func FuzzCheckBytes(f *testing.F) {
	f.Add(pkt(f, "tcp", aV4, ap("10.1.2.3"), 1, 443).Bytes())
	f.Add(pkt(f, "udp", aV6, ap("2001:db8::1"), 1, 53).Bytes())
	f.Add(pkt(f, "icmp", bV4, ap("8.8.8.8"), 0, 7).Bytes())
	tab := fixture(f)
	tr := NewTracker(TrackerConfig{Size: 64})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, c := range []ClientID{cid(1), cid(2), cid(3)} {
			v := tab.CheckBytes(c, b, t0)
			if v >= numVerdicts {
				t.Fatalf("verdict %d", v)
			}
			p, err := ippacket.Parse(b)
			if (err != nil) != (v == DropMalformed) {
				t.Fatalf("malformed verdict %v for parse error %v", v, err)
			}
			if err == nil {
				if v.Allowed() {
					tr.Track(p, t0)
				}
				tr.AllowReply(p, t0.Add(time.Second))
			}
		}
	})
}
