package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/transport/v3"
	"github.com/pion/transport/v3/stdnet"
	"github.com/pion/turn/v3"
)

// startPion runs pion/turn v3's server with the same credential scheme and
// socket buffers as ours (the relay this package replaced), for
// side-by-side benchmarks.
func startPion(t testing.TB, secret string) netip.AddrPort {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if sk, err := newSock(conn); err == nil {
		sk.setBuffers(sockBufSize)
	}
	sn, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:         Realm,
		LoggerFactory: lf,
		AuthHandler: func(username, realm string, _ net.Addr) ([]byte, bool) {
			pw, err := Password(secret, username, time.Now())
			if err != nil {
				return nil, false
			}
			return turn.GenerateAuthKey(username, realm, pw), true
		},
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: conn,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{
				RelayAddress: net.IPv4(127, 0, 0, 1), Address: "127.0.0.1", Net: bufNet{sn},
			},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// bufNet gives pion's allocation sockets our socket buffer size.
type bufNet struct{ *stdnet.Net }

func (n bufNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenPacket(network, address)
	if uc, ok := c.(*net.UDPConn); ok && err == nil {
		if sk, err := newSock(uc); err == nil {
			sk.setBuffers(sockBufSize)
		}
	}
	return c, err
}

var _ transport.Net = bufNet{}

const benchPayload = 1280

// BenchmarkRelayChannelData pushes b.N 1280-byte payloads through one
// channel binding (client → peer as ChannelData, peer → client framed by
// the relay) on loopback, through pion/turn's server and ours in the same
// run. The senders use sendmmsg batches so the relay is the bottleneck;
// the figures are what arrived per second (delivered pkt/s, Gbit/s of
// payload) and the share lost.
//
// The senders and receivers behave like snownet on StdNetBind: they send
// 32-datagram UDP_SEGMENT batches and receive with UDP_GRO. "gozone" is
// this relay, "gozone-nooffload" the same with Config.NoOffloads.
func BenchmarkRelayChannelData(b *testing.B) {
	for _, dir := range []string{"toPeer", "toClient"} {
		for _, impl := range []string{"pion", "gozone-nooffload", "gozone"} {
			b.Run(dir+"/"+impl, func(b *testing.B) { benchRelay(b, impl, dir) })
		}
	}
}

const benchSegs = 32

func benchRelay(b *testing.B, impl, dir string) {
	secret := "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	var addr netip.AddrPort
	if impl == "pion" {
		addr = startPion(b, secret)
	} else {
		s, err := New(Config{ListenAddr: "127.0.0.1:0", MinPort: 41000, MaxPort: 48999, Secret: secret,
			NoOffloads: impl == "gozone-nooffload"})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		addr = s.Addr()
	}
	user, pass := Credentials(secret, testKey, time.Now().Add(time.Hour).Unix())
	c := newRawClient(b, addr, user, pass)
	relayed := c.allocate()
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer peer.Close()
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	mustSucceed(b, "channel bind", c.channelBind(0x4000, peerAddr))

	var from, to *net.UDPConn
	var dst netip.AddrPort
	pkt := make([]byte, channelHeader+benchPayload)
	if dir == "toPeer" {
		from, to, dst = c.conn, peer, addr
		binary.BigEndian.PutUint16(pkt[0:2], 0x4000)
		binary.BigEndian.PutUint16(pkt[2:4], benchPayload)
	} else {
		from, to, dst = peer, c.conn, relayed
		pkt = pkt[channelHeader:]
	}
	fs, err := newSock(from)
	if err != nil {
		b.Fatal(err)
	}
	ts, err := newSock(to)
	if err != nil {
		b.Fatal(err)
	}
	fs.setBuffers(sockBufSize)
	ts.setBuffers(sockBufSize)
	ts.enableGRO()
	batch := make([]byte, 0, benchSegs*len(pkt))
	for i := 0; i < benchSegs; i++ {
		batch = append(batch, pkt...)
	}
	_ = to.SetReadDeadline(time.Time{})

	// Warm-up: one datagram must make it before timing starts.
	got := make(chan int, 1)
	stop := make(chan struct{})
	go func() {
		r := newBatchReader(ts, batchSize)
		bb := newBatchBufs(batchSize, 0)
		total := 0
		for {
			_ = to.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			n, err := r.read(bb.rd, bb.sizes, bb.gso, bb.from)
			if err != nil {
				select {
				case <-stop:
					got <- total
					return
				default:
				}
				if total > 0 {
					got <- total
					return
				}
				continue
			}
			for i := 0; i < n; i++ {
				if g := bb.gso[i]; g > 0 && bb.sizes[i] > g {
					total += (bb.sizes[i] + g - 1) / g
				} else {
					total++
				}
			}
		}
	}()
	w := newBatchWriter(batchSize)
	w.begin(fs)
	w.add(pkt, dst, 0)
	w.flush()
	time.Sleep(50 * time.Millisecond)

	b.SetBytes(benchPayload)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i += benchSegs {
		k := min(benchSegs, b.N-i)
		w.add(batch[:k*len(pkt)], dst, len(pkt))
	}
	w.flush()
	close(stop)
	n := <-got - 1                                      // minus the warm-up datagram
	elapsed := time.Since(start) - 300*time.Millisecond // the reader's idle timeout
	b.StopTimer()
	if n <= 0 || elapsed <= 0 {
		b.Fatalf("nothing arrived (%d)", n)
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), "pkt/s")
	b.ReportMetric(float64(n)*benchPayload*8/elapsed.Seconds()/1e9, "Gbit/s")
	b.ReportMetric(100*(1-float64(n)/float64(b.N)), "%lost")
}
