package snownet

import (
	"errors"
	"strings"
	"testing"
)

func TestParseCandidates(t *testing.T) {
	in := []string{
		"candidate:7031633958891736544 1 udp 50331391 35.244.108.190 53909 typ relay",
		"2878742611 1 udp 2130706431 127.0.0.1 51820 typ host",
		"a=candidate:1 1 udp 1694498815 203.0.113.7 40000 typ srflx raddr 10.0.0.2 rport 51820",
		"candidate:1 1 udp 1694498815 203.0.113.7 40000 typ srflx", // str0m omits raddr
		"candidate:1 1 tcp 2130706431 127.0.0.1 9 typ host tcptype passive",
		"candidate:garbage",
		"",
		"candidate:1 1 udp notanumber 127.0.0.1 9 typ host",
	}
	ok, errs := ParseCandidates(in)
	if len(ok) != 4 || len(errs) != 4 {
		t.Fatalf("ok=%q errs=%v", ok, errs)
	}
	for _, s := range ok {
		if !strings.HasPrefix(s, "candidate:") || strings.HasPrefix(s, "candidate:candidate:") {
			t.Errorf("not normalised: %q", s)
		}
	}
	if !errors.Is(errs[0], ErrCandidateNotUDP) {
		t.Errorf("tcp candidate: %v", errs[0])
	}
	for _, e := range errs[1:] {
		if !errors.Is(e, ErrBadCandidate) {
			t.Errorf("want ErrBadCandidate: %v", e)
		}
	}
	// Round trip keeps the candidate.
	c, err := parseCandidate(ok[0])
	if err != nil || marshalCandidate(c) != ok[0] {
		t.Fatalf("round trip %q -> %v %v", ok[0], c, err)
	}
}
