package snownet

import (
	"testing"
	"time"
)

const establishTimeout = 30 * time.Second

func TestDirectLoopback(t *testing.T) {
	a := newTestPeer(t, "alice", "10.0.0.1", nil)
	b := newTestPeer(t, "bob", "10.0.0.2", nil)
	connectPair(t, a, b)

	ev := a.mustEvent(EventConnectionEstablished, "bob", establishTimeout)
	if ev.Path != PathDirect {
		t.Fatalf("alice: established path %v, want direct", ev.Path)
	}
	b.mustEvent(EventConnectionEstablished, "alice", establishTimeout)

	for i := 0; i < 3; i++ {
		pingOnce(t, a, b, 10*time.Second)
		pingOnce(t, b, a, 10*time.Second)
	}
	for _, tc := range []struct {
		tp   *testPeer
		peer string
	}{{a, "bob"}, {b, "alice"}} {
		st := connStats(t, tc.tp, tc.peer)
		if st.Path != PathDirect || st.Pair == nil || st.Pair.LocalRelay || st.Pair.RemoteRelay {
			t.Errorf("%s: path %v pair %+v, want direct", tc.tp.name, st.Path, st.Pair)
		}
		if st.State != StateConnected {
			t.Errorf("%s: state %v", tc.tp.name, st.State)
		}
		if st.RxBytes == 0 || st.TxBytes == 0 || st.LastHandshake.IsZero() {
			t.Errorf("%s: counters %+v", tc.tp.name, st)
		}
	}
	if s := a.node.BindStats(); s.WireGuard == 0 || s.STUN == 0 {
		t.Errorf("bind stats %+v: want WireGuard and STUN traffic on the shared socket", s)
	}
}
