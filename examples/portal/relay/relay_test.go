package relay

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pion/turn/v3"
)

const testKey = "fiAjBY+Lr0Ih1oxGjUzMSs5UUkLOl8spg5oZtmmsLWY="

func TestCredentialsScheme(t *testing.T) {
	secret := "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	u, p := Credentials(secret, testKey, 2145916800)
	saltSum := sha256.Sum256([]byte(testKey))
	salt := base64.RawStdEncoding.EncodeToString(saltSum[:])
	if u != "2145916800:"+salt {
		t.Fatalf("username %q", u)
	}
	pwSum := sha256.Sum256([]byte("2145916800:" + secret + ":" + salt))
	if p != base64.RawStdEncoding.EncodeToString(pwSum[:]) {
		t.Fatalf("password %q", p)
	}
	now := time.Unix(2000000000, 0)
	if got, err := Password(secret, u, now); err != nil || got != p {
		t.Fatalf("Password: %q %v", got, err)
	}
	if _, err := Password(secret, "1999999999:"+salt, now); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	for _, bad := range []string{"", "nocolon", "abc:salt", "-5:salt", "123:"} {
		if _, err := Password(secret, bad, now); !errors.Is(err, ErrBadUsername) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func startRelay(t *testing.T, now func() time.Time) *Server {
	t.Helper()
	s, err := New(Config{ListenAddr: "127.0.0.1:0", MinPort: 41000, MaxPort: 48999, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func turnClient(t *testing.T, relay netip.AddrPort, user, pass string) *turn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: relay.String(), TURNServerAddr: relay.String(),
		Username: user, Password: pass, Realm: Realm, Conn: conn, RTO: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	return c
}

func TestRelayAllocatesAndRelays(t *testing.T) {
	s := startRelay(t, nil)
	if s.Addr().Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("addr %v", s.Addr())
	}
	user, pass := s.Credentials(testKey, time.Now().Add(time.Hour).Unix())
	c := turnClient(t, s.Addr(), user, pass)
	relayed, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	defer relayed.Close()
	ra := relayed.LocalAddr().(*net.UDPAddr)
	if !ra.IP.Equal(net.IPv4(127, 0, 0, 1)) || ra.Port < 41000 || ra.Port > 48999 {
		t.Fatalf("relayed address %v outside loopback/port range", ra)
	}
	if s.AllocationCount() != 1 {
		t.Fatalf("allocations %d", s.AllocationCount())
	}

	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	// Client → peer (this also installs the permission for the peer).
	if _, err := relayed.WriteTo([]byte("hello peer"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := peer.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "hello peer" {
		t.Fatalf("peer got %q %v", buf[:n], err)
	}
	if from.(*net.UDPAddr).Port != ra.Port {
		t.Fatalf("peer saw %v, want relayed %v", from, ra)
	}
	// Peer → client through the relayed address.
	if _, err := peer.WriteTo([]byte("hello client"), ra); err != nil {
		t.Fatal(err)
	}
	_ = relayed.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err = relayed.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], []byte("hello client")) {
		t.Fatalf("client got %q %v", buf[:n], err)
	}
}

func TestRelayRefusesExpiredAndForgedCredentials(t *testing.T) {
	clock := &fakeClock{t: time.Unix(2000000000, 0)}
	s := startRelay(t, clock.now)
	other := "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
	past := clock.t.Add(-time.Second).Unix()
	future := clock.t.Add(time.Hour).Unix()

	goodUser, goodPass := s.Credentials(testKey, future)
	expUser, expPass := s.Credentials(testKey, past)
	forgedUser, forgedPass := Credentials(other, testKey, future)
	// A stretched expiry with the old password: the password binds the expiry.
	stretched := strconv.FormatInt(future+3600, 10) + ":" + Salt(testKey)
	cases := []struct{ name, user, pass string }{
		{"expired", expUser, expPass},
		{"other secret", forgedUser, forgedPass},
		{"wrong password", goodUser, goodPass + "x"},
		{"stretched expiry", stretched, goodPass},
		{"garbage username", "hello", "world"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl := turnClient(t, s.Addr(), c.user, c.pass)
			if conn, err := cl.Allocate(); err == nil {
				conn.Close()
				t.Fatal("allocation accepted")
			}
		})
	}
	if s.AllocationCount() != 0 {
		t.Fatalf("allocations %d", s.AllocationCount())
	}
	if s.Refused() < 2 {
		t.Fatalf("refused counter %d", s.Refused())
	}
	// Valid credentials on the same relay and clock are accepted.
	cl := turnClient(t, s.Addr(), goodUser, goodPass)
	conn, err := cl.Allocate()
	if err != nil {
		t.Fatalf("good credentials refused: %v", err)
	}
	conn.Close()
}

func TestRelayNeedsPublicIPOnWildcard(t *testing.T) {
	if _, err := New(Config{ListenAddr: "0.0.0.0:0"}); !errors.Is(err, ErrPublicIPRequired) {
		t.Fatalf("err %v", err)
	}
	if _, err := New(Config{ListenAddr: "127.0.0.1:0", MinPort: 50000, MaxPort: 40000}); err == nil {
		t.Fatal("empty port range accepted")
	}
}
