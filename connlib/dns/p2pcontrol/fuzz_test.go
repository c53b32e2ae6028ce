package p2pcontrol

import (
	"testing"
)

// FuzzDecode: arbitrary packets never panic, and whatever decodes re-encodes
// to something that decodes to the same message.
func FuzzDecode(f *testing.F) {
	f.Add(AppendGoodbye(nil))
	if p, err := AppendAssignedIPs(nil, AssignedIPs{Resource: rid, Domain: "a.example.com", ProxyIPs: proxyIPs(8)}); err == nil {
		f.Add(p)
	}
	if p, err := AppendDomainStatus(nil, DomainStatus{Resource: rid, Domain: "a.example.com", Status: StatusActive}); err == nil {
		f.Add(p)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		m, err := Decode(pkt)
		if err != nil {
			return
		}
		switch {
		case m.AssignedIPs != nil:
			a := *m.AssignedIPs
			if n := len(a.ProxyIPs); n != 4 && n != 8 {
				return // decodable but not encodable by design
			}
			out, err := AppendAssignedIPs(nil, a)
			if err != nil {
				t.Fatalf("decoded %+v does not re-encode: %v", a, err)
			}
			m2, err := Decode(out)
			if err != nil || m2.AssignedIPs.Resource != a.Resource || m2.AssignedIPs.Domain != a.Domain || len(m2.AssignedIPs.ProxyIPs) != len(a.ProxyIPs) {
				t.Fatalf("round trip: %+v %v", m2, err)
			}
			for i := range a.ProxyIPs {
				if m2.AssignedIPs.ProxyIPs[i] != a.ProxyIPs[i] {
					t.Fatalf("ip %d changed", i)
				}
			}
		case m.DomainStatus != nil:
			out, err := AppendDomainStatus(nil, *m.DomainStatus)
			if err != nil {
				t.Fatalf("decoded %+v does not re-encode: %v", *m.DomainStatus, err)
			}
			m2, err := Decode(out)
			if err != nil || *m2.DomainStatus != *m.DomainStatus {
				t.Fatalf("round trip: %+v %v", m2, err)
			}
		}
	})
}
