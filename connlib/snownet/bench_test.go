package snownet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

// benchTun is a batched in-memory tun.Device for throughput benchmarks: its
// Read generates copies of one packet (full batches of 128) while the
// generator is on, its Write counts what WireGuard delivers. Unlike
// tuntest's ChannelTUN (one packet per call over unbuffered channels) it
// lets the device and the Bind work in batches, so the benchmark measures
// the data path rather than the test TUN. The same device is used for
// gozone and for plain wireguard-go.
type benchTun struct {
	pkt    []byte
	on     atomic.Bool
	wake   chan struct{}
	closed chan struct{}
	once   sync.Once
	events chan tun.Event

	sent atomic.Uint64 // packets generated
	recv atomic.Uint64 // packets written by WireGuard

	// rate, if set, paces Read at rate packets per second in bursts of at
	// most paceBurst (a flow below the relay's capacity, so that the CPU
	// per packet is not inflated by packets the relay drops).
	rate     float64
	paceFrom time.Time
	paceSent uint64

	mu     sync.Mutex
	target uint64
	first  time.Time
	last   time.Time
	done   chan struct{}
}

var _ tun.Device = (*benchTun)(nil)

func newBenchTun(src, dst netip.Addr, size int) *benchTun {
	t := &benchTun{
		pkt:    ipv4UDP(src, dst, size),
		wake:   make(chan struct{}, 1),
		closed: make(chan struct{}),
		events: make(chan tun.Event, 1),
	}
	t.events <- tun.EventUp
	return t
}

// ipv4UDP builds an IPv4/UDP packet of size bytes (checksums are not
// checked on this path).
func ipv4UDP(src, dst netip.Addr, size int) []byte {
	p := make([]byte, size)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], uint16(size))
	p[8] = 64
	p[9] = 17
	s, d := src.As4(), dst.As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	binary.BigEndian.PutUint16(p[20:22], 9999)
	binary.BigEndian.PutUint16(p[22:24], 9)
	binary.BigEndian.PutUint16(p[24:26], uint16(size-20))
	return p
}

const paceBurst = 32

func (t *benchTun) start() {
	t.paceFrom, t.paceSent = time.Now(), 0
	t.on.Store(true)
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func (t *benchTun) stop() { t.on.Store(false) }

func (t *benchTun) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for !t.on.Load() {
		select {
		case <-t.wake:
		case <-t.closed:
			return 0, os.ErrClosed
		}
	}
	n := len(bufs)
	if t.rate > 0 {
		for {
			due := int(time.Since(t.paceFrom).Seconds()*t.rate) - int(t.paceSent)
			if due > 0 {
				n = min(n, due, paceBurst)
				break
			}
			time.Sleep(time.Duration(float64(time.Second) / t.rate))
		}
		t.paceSent += uint64(n)
	}
	for i := range bufs[:n] {
		sizes[i] = copy(bufs[i][offset:], t.pkt)
	}
	t.sent.Add(uint64(n))
	return n, nil
}

// expect arms the receive counter: the returned channel closes when n
// packets arrived.
func (t *benchTun) expect(n uint64) chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.recv.Store(0)
	t.target = n
	t.first, t.last = time.Time{}, time.Time{}
	t.done = make(chan struct{})
	return t.done
}

func (t *benchTun) Write(bufs [][]byte, offset int) (int, error) {
	got := t.recv.Add(uint64(len(bufs)))
	t.mu.Lock()
	if t.first.IsZero() {
		t.first = time.Now()
	}
	if t.done != nil && got >= t.target {
		t.last = time.Now()
		close(t.done)
		t.done = nil
	}
	t.mu.Unlock()
	return len(bufs), nil
}

func (t *benchTun) File() *os.File           { return nil }
func (t *benchTun) MTU() (int, error)        { return 1420, nil }
func (t *benchTun) Name() (string, error)    { return "bench", nil }
func (t *benchTun) Events() <-chan tun.Event { return t.events }
func (t *benchTun) BatchSize() int           { return conn.IdealBatchSize }
func (t *benchTun) Close() error {
	t.once.Do(func() { close(t.closed); close(t.events) })
	return nil
}

const benchPacketSize = 1400

// runThroughput pushes packets from src to dst until dst got b.N of them
// and reports Gbit/s, packet loss and (with ReportAllocs) allocations per
// packet over both devices.
func runThroughput(b *testing.B, src, dst *benchTun) {
	// Warm up (handshake, path) with a small burst.
	done := dst.expect(256)
	src.start()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		b.Fatal("warm-up packets not delivered")
	}
	src.stop()
	time.Sleep(50 * time.Millisecond)

	done = dst.expect(uint64(b.N))
	sent0 := src.sent.Load()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	src.start()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("only %d of %d packets delivered", dst.recv.Load(), b.N)
	}
	src.stop()
	cpu := processCPU() - cpu0
	b.StopTimer()
	dst.mu.Lock()
	elapsed := dst.last.Sub(dst.first)
	dst.mu.Unlock()
	if elapsed <= 0 {
		elapsed = time.Nanosecond
	}
	sent := src.sent.Load() - sent0
	b.ReportMetric(float64(b.N)*benchPacketSize*8/elapsed.Seconds()/1e9, "Gbit/s")
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N), "ns/pkt")
	if sent > 0 {
		b.ReportMetric(1-float64(b.N)/float64(sent), "packet-loss")
	}
	// CPU of this process (both Nodes, and the relay unless it runs in a
	// child) per packet delivered and per packet sent.
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/rcvd")
		if sent > 0 {
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(sent), "cpu-ns/sent")
		}
	}
}

// BenchmarkThroughput mirrors wireguard-go's BenchmarkThroughput with
// 1400-byte packets over loopback UDP: gozone Nodes on the direct path and
// on the relayed path (in-process TURN server), and plain wireguard-go
// devices over StdNetBind, with the same batched in-memory TUN.
func BenchmarkThroughput(b *testing.B) {
	ipA, ipB := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	b.Run("wireguard-go", func(b *testing.B) {
		src, dst := newBenchTun(ipA, ipB, benchPacketSize), newBenchTun(ipB, ipA, benchPacketSize)
		plainWireGuardPair(b, src, dst, ipA, ipB)
		runThroughput(b, src, dst)
	})
	b.Run("gozone-direct", func(b *testing.B) {
		src, dst := newBenchTun(ipA, ipB, benchPacketSize), newBenchTun(ipB, ipA, benchPacketSize)
		a := newTestPeer(b, "alice", ipA.String(), func(c *Config) { c.Tun = src })
		p := newTestPeer(b, "bob", ipB.String(), func(c *Config) { c.Tun = dst })
		connectPair(b, a, p)
		if ev := a.mustEvent(EventConnectionEstablished, "bob", establishTimeout); ev.Path != PathDirect {
			b.Fatalf("path %v", ev.Path)
		}
		runThroughput(b, src, dst)
	})
	// The two relayed paths run back to back, so with -count=N they
	// alternate (N pairs on the same loaded machine): pion's TURN client on
	// its own socket per agent, and TURN on the shared socket
	// (the default shared-socket TURN, ChannelData framed in the Bind's batches). Both
	// go through the same in-process pion/turn server, which relays one
	// packet per syscall and bounds both.
	b.Run("gozone-relayed", func(b *testing.B) { benchRelayed(b, ipA, ipB, relayedOpts{}) })
	b.Run("gozone-relayed-shared", func(b *testing.B) { benchRelayed(b, ipA, ipB, relayedOpts{shared: true}) })
}

// BenchmarkRelayedPaths alternates the two relayed paths in pairs
// (pair1/pion, pair1/shared, pair2/pion, ...) so that both see the same
// load on a shared machine: go test -bench RelayedPaths -benchtime 100000x.
func BenchmarkRelayedPaths(b *testing.B) {
	ipA, ipB := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	for i := 1; i <= 3; i++ {
		b.Run(fmt.Sprintf("pair%d/pion", i), func(b *testing.B) { benchRelayed(b, ipA, ipB, relayedOpts{}) })
		b.Run(fmt.Sprintf("pair%d/shared", i), func(b *testing.B) { benchRelayed(b, ipA, ipB, relayedOpts{shared: true}) })
	}
}

// BenchmarkOurCPU measures the Nodes' own CPU per packet (cpu-ns/rcvd and
// cpu-ns/sent) on the direct path and on the shared-socket relayed path
// with StdNetBind's receive and with the Bind's batched receive, the relay
// running in a child process so its CPU is not counted. The three
// alternate in pairs: go test -run XXX -bench OurCPU -benchtime 100000x.
func BenchmarkOurCPU(b *testing.B) {
	ipA, ipB := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	for i := 1; i <= 3; i++ {
		for _, std := range []bool{true, false} {
			name := "batched"
			if std {
				name = "std"
			}
			b.Run(fmt.Sprintf("pair%d/direct-%s", i, name), func(b *testing.B) {
				src, dst := newBenchTun(ipA, ipB, benchPacketSize), newBenchTun(ipB, ipA, benchPacketSize)
				src.rate = benchPaceRate()
				a := newTestPeer(b, "alice", ipA.String(), func(c *Config) { c.Tun = src; c.Bind.StdReceive = std })
				p := newTestPeer(b, "bob", ipB.String(), func(c *Config) { c.Tun = dst; c.Bind.StdReceive = std })
				connectPair(b, a, p)
				if ev := a.mustEvent(EventConnectionEstablished, "bob", establishTimeout); ev.Path != PathDirect {
					b.Fatalf("path %v", ev.Path)
				}
				runThroughput(b, src, dst)
			})
			b.Run(fmt.Sprintf("pair%d/relayed-%s", i, name), func(b *testing.B) {
				benchRelayed(b, ipA, ipB, relayedOpts{shared: true, childRelay: true, stdReceive: std, rate: benchPaceRate()})
			})
		}
	}
}

type relayedOpts struct {
	shared     bool // TURN on the shared socket (else pion's per-agent client)
	childRelay bool // the TURN server runs in a child process
	stdReceive bool // StdNetBind's receive instead of the batched reader
	rate       float64
}

// benchPaceRate is the packet rate of BenchmarkOurCPU: env
// SNOWNET_BENCH_PPS, default 10000 (112 Mbit/s, below what pion/turn's
// server relays on a loaded 2-core machine); 0 sends as fast as it can.
func benchPaceRate() float64 {
	if v, err := strconv.ParseFloat(os.Getenv("SNOWNET_BENCH_PPS"), 64); err == nil && v >= 0 {
		return v // 0: unpaced
	}
	return 10000
}

func benchRelayed(b *testing.B, ipA, ipB netip.Addr, o relayedOpts) {
	shared := o.shared
	var srv netip.AddrPort
	if o.childRelay {
		srv = startTURNProcess(b)
	} else {
		srv = startTURN(b)
	}
	relayOnly := func(t *benchTun) func(c *Config) {
		return func(c *Config) {
			c.Tun = t
			c.DisableHostCandidates, c.DisableSrflxCandidates = true, true
			c.PionTURN = !shared
			c.Bind.StdReceive = o.stdReceive
		}
	}
	src, dst := newBenchTun(ipA, ipB, benchPacketSize), newBenchTun(ipB, ipA, benchPacketSize)
	src.rate = o.rate
	a := newTestPeer(b, "alice", ipA.String(), relayOnly(src))
	p := newTestPeer(b, "bob", ipB.String(), relayOnly(dst))
	useRelay(b, srv, a, p)
	connectPair(b, a, p)
	if ev := a.mustEvent(EventConnectionEstablished, "bob", establishTimeout); ev.Path != PathRelayed {
		b.Fatalf("path %v", ev.Path)
	}
	if shared {
		if pp := a.node.bind.peer("bob").path.Load(); pp.turn == nil {
			b.Fatalf("shared TURN: the Bind is not framing ChannelData itself (path %+v)", pp)
		}
	}
	runThroughput(b, src, dst)
}

// plainWireGuardPair connects two stock wireguard-go devices over
// StdNetBind on loopback: the baseline.
func plainWireGuardPair(b *testing.B, ta, tb tun.Device, ipA, ipB netip.Addr) {
	ka, _ := GeneratePrivateKey()
	kb, _ := GeneratePrivateKey()
	quiet := device.NewLogger(device.LogLevelSilent, "")
	da := device.NewDevice(ta, conn.NewStdNetBind(), quiet)
	db := device.NewDevice(tb, conn.NewStdNetBind(), quiet)
	b.Cleanup(func() { da.Close(); db.Close() })
	for _, d := range []struct {
		dev *device.Device
		key Key
	}{{da, ka}, {db, kb}} {
		if err := d.dev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=0\n", d.key.hex())); err != nil {
			b.Fatal(err)
		}
		if err := d.dev.Up(); err != nil {
			b.Fatal(err)
		}
	}
	port := func(d *device.Device) string {
		s, _ := d.IpcGet()
		for _, l := range strings.Split(s, "\n") {
			if v, ok := strings.CutPrefix(l, "listen_port="); ok {
				if _, err := strconv.Atoi(v); err == nil {
					return v
				}
			}
		}
		b.Fatal("no listen port")
		return ""
	}
	if err := da.IpcSet(fmt.Sprintf("public_key=%s\nendpoint=127.0.0.1:%s\nallowed_ip=%s/32\n", kb.PublicKey().hex(), port(db), ipB)); err != nil {
		b.Fatal(err)
	}
	if err := db.IpcSet(fmt.Sprintf("public_key=%s\nendpoint=127.0.0.1:%s\nallowed_ip=%s/32\n", ka.PublicKey().hex(), port(da), ipA)); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkConnectionSetup measures, on loopback, the time from the two
// upserts to the first packet delivered through the new connection (ICE
// checks, nomination, WireGuard handshake, one ping).
func BenchmarkConnectionSetup(b *testing.B) {
	a := newTestPeer(b, "alice", "10.0.0.1", nil)
	p := newTestPeer(b, "bob", "10.0.0.2", nil)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a.clearEvents()
		p.clearEvents()
		// Fresh credentials, as the portal gives a new connection.
		a.creds.Ufrag = fmt.Sprintf("a%03d", i%1000)
		p.creds.Ufrag = fmt.Sprintf("b%03d", i%1000)
		connectPair(b, a, p)
		pingOnce(b, a, p, 30*time.Second)
		b.StopTimer()
		if err := a.node.CloseConnection("bob"); err != nil {
			b.Fatal(err)
		}
		if err := p.node.CloseConnection("alice"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
