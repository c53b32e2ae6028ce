package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v2"
)

// rawClient speaks TURN with hand-built messages, so tests can check exact
// codes and benchmarks can drive ChannelData without a client library in
// the way.
type rawClient struct {
	t            testing.TB
	conn         *net.UDPConn
	server       netip.AddrPort
	user, pass   string
	realm, nonce string
	key          stun.MessageIntegrity
}

func newRawClient(t testing.TB, server netip.AddrPort, user, pass string) *rawClient {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, conn: c, server: server, user: user, pass: pass}
}

func (c *rawClient) addr() netip.AddrPort { return c.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// roundTrip sends m and returns the response with its transaction id,
// retransmitting every 500 ms for up to 10 s.
func (c *rawClient) roundTrip(m *stun.Message) *stun.Message {
	c.t.Helper()
	buf := make([]byte, 2048)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.conn.WriteToUDPAddrPort(m.Raw, c.server); err != nil {
			c.t.Fatal(err)
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			n, _, err := c.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				break // retransmit
			}
			res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if res.Decode() == nil && res.TransactionID == m.TransactionID {
				return res
			}
		}
	}
	c.t.Fatalf("no answer to %v", m.Type)
	return nil
}

// request builds a request; auth adds USERNAME, REALM, NONCE and
// MESSAGE-INTEGRITY with what the client has learnt.
func (c *rawClient) request(method stun.Method, auth bool, attrs ...stun.Setter) *stun.Message {
	c.t.Helper()
	s := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
	s = append(s, attrs...)
	if auth {
		s = append(s, stun.NewUsername(c.user), stun.NewRealm(c.realm), stun.NewNonce(c.nonce), c.key)
	}
	s = append(s, stun.Fingerprint)
	m, err := stun.Build(s...)
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}

// do runs an authenticated request, learning realm and nonce from a 401
// or 438 first, and returns the final response.
func (c *rawClient) do(method stun.Method, attrs ...stun.Setter) *stun.Message {
	c.t.Helper()
	for i := 0; i < 3; i++ {
		res := c.roundTrip(c.request(method, c.key != nil, attrs...))
		code := errCode(res)
		if code != stun.CodeUnauthorized && code != stun.CodeStaleNonce {
			return res
		}
		if code == stun.CodeUnauthorized && c.key != nil && c.nonce == attrString(res, stun.AttrNonce) {
			return res // the credentials are wrong
		}
		c.learn(res)
	}
	c.t.Fatal("authentication did not converge")
	return nil
}

func (c *rawClient) learn(res *stun.Message) {
	c.realm = attrString(res, stun.AttrRealm)
	c.nonce = attrString(res, stun.AttrNonce)
	c.key = stun.NewLongTermIntegrity(c.user, c.realm, c.pass)
}

func errCode(m *stun.Message) stun.ErrorCode {
	if m.Type.Class != stun.ClassErrorResponse {
		return 0
	}
	var ec stun.ErrorCodeAttribute
	if ec.GetFrom(m) != nil {
		return 1
	}
	return ec.Code
}

func attrString(m *stun.Message, t stun.AttrType) string {
	v, _ := m.Get(t)
	return string(v)
}

func requestedUDP() stun.Setter {
	return stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}
}

func channelAttr(num uint16) stun.Setter {
	v := make([]byte, 4)
	binary.BigEndian.PutUint16(v, num)
	return stun.RawAttribute{Type: stun.AttrChannelNumber, Value: v}
}

// allocate allocates and returns the relayed address.
func (c *rawClient) allocate() netip.AddrPort {
	c.t.Helper()
	res := c.do(stun.MethodAllocate, requestedUDP())
	if res.Type.Class != stun.ClassSuccessResponse {
		c.t.Fatalf("allocate: %v code %d", res.Type, errCode(res))
	}
	if err := c.key.Check(res); err != nil {
		c.t.Fatalf("allocate response integrity: %v", err)
	}
	var ra stun.XORMappedAddress
	if err := ra.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
		c.t.Fatal(err)
	}
	ip, _ := netip.AddrFromSlice(ra.IP)
	return netip.AddrPortFrom(ip.Unmap(), uint16(ra.Port))
}

func (c *rawClient) channelBind(num uint16, peer netip.AddrPort) *stun.Message {
	c.t.Helper()
	return c.do(stun.MethodChannelBind, channelAttr(num), xorAddr{stun.AttrXORPeerAddress, peer})
}

func mustSucceed(t testing.TB, what string, m *stun.Message) {
	t.Helper()
	if m.Type.Class != stun.ClassSuccessResponse {
		var ec stun.ErrorCodeAttribute
		_ = ec.GetFrom(m)
		t.Fatalf("%s: %v %d %s", what, m.Type, ec.Code, ec.Reason)
	}
}
