package portal

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

type recorder struct {
	mu     sync.Mutex
	events []string
	fail   bool
}

func (r *recorder) send(event string, payload any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("down")
	}
	r.events = append(r.events, fmt.Sprintf("%s %v", event, payload))
	return nil
}

func TestSessionCapabilitiesAfterJoinAndHeldCandidates(t *testing.T) {
	s := NewSession(nil)
	if err := s.Send(EventRequestAuthorization, RequestAuthorization{}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("send while down: %v", err)
	}
	c1 := GatewayCandidates{GatewayID: "g", Candidates: []string{"candidate:1"}}
	c2 := GatewayCandidates{GatewayID: "g", Candidates: []string{"candidate:2"}}
	s.SendCandidates(EventNewGatewayIceCandidates, c1)
	s.SendCandidates(EventNewGatewayIceCandidates, c1) // exact duplicate: held once
	s.SendCandidates(EventInvalidateGatewayIceCandidates, c2)
	if s.Held() != 2 {
		t.Fatalf("held %d", s.Held())
	}
	r := &recorder{}
	if err := s.OnJoin(r.send); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"set_snownet_capabilities {false}",
		"new_gateway_ice_candidates {g [candidate:1]}",
		"invalidate_gateway_ice_candidates {g [candidate:2]}",
	}
	if fmt.Sprint(r.events) != fmt.Sprint(want) {
		t.Fatalf("sent %q\nwant %q", r.events, want)
	}
	if s.Held() != 0 || !s.Connected() {
		t.Fatal("not flushed")
	}
	s.SendCandidates(EventNewGatewayIceCandidates, c2)
	if len(r.events) != 4 {
		t.Fatalf("live send: %q", r.events)
	}

	// A failing send holds the message; the next join delivers it after the
	// capabilities.
	r.fail = true
	s.SendCandidates(EventNewGatewayIceCandidates, c1)
	if s.Held() != 1 {
		t.Fatalf("held %d after failed send", s.Held())
	}
	if err := s.OnJoin(r.send); err == nil {
		t.Fatal("join with failing sender succeeded")
	}
	s.OnDisconnect()
	r2 := &recorder{}
	if err := s.OnJoin(r2.send); err != nil {
		t.Fatal(err)
	}
	if len(r2.events) != 2 || r2.events[0] != "set_snownet_capabilities {false}" {
		t.Fatalf("rejoin sent %q", r2.events)
	}
}

func TestSessionHeldIsBounded(t *testing.T) {
	s := NewSession(nil)
	for i := 0; i < MaxHeldCandidateMessages+10; i++ {
		s.SendCandidates(EventNewGatewayIceCandidates, GatewayCandidates{GatewayID: "g", Candidates: []string{fmt.Sprint(i)}})
	}
	if s.Held() != MaxHeldCandidateMessages {
		t.Fatalf("held %d", s.Held())
	}
}
