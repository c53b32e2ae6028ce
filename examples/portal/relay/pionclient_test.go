package relay

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// Interoperability with pion/turn v3's client, which uses
// CreatePermission, Send indications until its channel is bound, then
// ChannelData, and Refresh with lifetime 0 on Close.

func TestPionClientRelaysBothWaysAndDeletes(t *testing.T) {
	s := startRelayCfg(t, Config{})
	user, pass := s.Credentials(testKey, time.Now().Add(time.Hour).Unix())
	c := turnClient(t, s.Addr(), user, pass)
	relayed, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	peer, peerAddr := listenPeer(t)
	buf := make([]byte, 1500)
	ra := relayed.LocalAddr().(*net.UDPAddr).AddrPort()
	// Until pion's channel bind completes its data goes as Send
	// indications; keep going until both directions ran over the channel.
	for i := 0; ; i++ {
		if i == 500 {
			t.Fatalf("channel never used: %+v", s.Stats())
		}
		msg := fmt.Sprintf("ping %d", i)
		if _, err := relayed.WriteTo([]byte(msg), net.UDPAddrFromAddrPort(peerAddr)); err != nil {
			t.Fatal(err)
		}
		if got, from := readFrom(t, peer); string(got) != msg || from != ra {
			t.Fatalf("peer got %q from %v", got, from)
		}
		if _, err := peer.WriteToUDPAddrPort([]byte("pong "+msg), ra); err != nil {
			t.Fatal(err)
		}
		_ = relayed.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := relayed.ReadFrom(buf)
		if err != nil || string(buf[:n]) != "pong "+msg {
			t.Fatalf("client got %q %v", buf[:n], err)
		}
		if st := s.Stats(); st.ToPeers > 0 && st.ToClients > 0 {
			if st.Indications == 0 {
				t.Fatalf("expected the first datagram as a Send indication: %+v", st)
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := relayed.Close(); err != nil { // REFRESH with LIFETIME 0
		t.Fatal(err)
	}
	waitFor(t, "allocation deleted", func() bool { return s.AllocationCount() == 0 })
}

func TestPionClientRetriesAfterStaleNonce(t *testing.T) {
	clock := newAtomicClock(time.Now())
	s := startRelayCfg(t, Config{Now: clock.now})
	user, pass := s.Credentials(testKey, time.Now().Add(time.Hour).Unix())
	c := turnClient(t, s.Addr(), user, pass)
	relayed, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relayed.Close()
	clock.advance(NonceLifetime + time.Second)
	// A new peer needs a CreatePermission, which gets 438 first.
	peer, peerAddr := listenPeer(t)
	if _, err := relayed.WriteTo([]byte("after 438"), net.UDPAddrFromAddrPort(peerAddr)); err != nil {
		t.Fatal(err)
	}
	if got, _ := readFrom(t, peer); string(got) != "after 438" {
		t.Fatalf("peer got %q", got)
	}
}

func TestPionClientWrongPasswordRefused(t *testing.T) {
	s := startRelayCfg(t, Config{})
	user, pass := s.Credentials(testKey, time.Now().Add(time.Hour).Unix())
	c := turnClient(t, s.Addr(), user, "x"+pass)
	if conn, err := c.Allocate(); err == nil {
		conn.Close()
		t.Fatal("allocation with a wrong password")
	}
	if s.Refused() == 0 || s.AllocationCount() != 0 {
		t.Fatalf("refused %d allocations %d", s.Refused(), s.AllocationCount())
	}
}
