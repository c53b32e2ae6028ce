package connlib

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/device"
	wgtun "golang.zx2c4.com/wireguard/tun"

	"github.com/gozone/gozone/tun"
	"github.com/gozone/gozone/tun/tuntest"
)

var _ Tun = (*tun.MemTun)(nil)

func TestTunPackageAgreesWithConnlib(t *testing.T) {
	if tun.MaxBatch != MaxBatch {
		t.Errorf("tun.MaxBatch = %d, connlib.MaxBatch = %d", tun.MaxBatch, MaxBatch)
	}
}

func TestWireGuardDeviceAdapter(t *testing.T) {
	a, b := tun.NewMemPair(tun.MemConfig{BatchSize: 4})
	defer b.Close()
	d := NewWireGuardDevice(a)

	if ev := <-d.Events(); ev != wgtun.EventUp {
		t.Errorf("first event = %v, want EventUp", ev)
	}
	if mtu, err := d.MTU(); mtu != a.MTU() || err != nil {
		t.Errorf("MTU() = %d, %v", mtu, err)
	}
	if name, err := d.Name(); name != a.Name() || err != nil {
		t.Errorf("Name() = %q, %v", name, err)
	}
	if d.BatchSize() != 4 || d.File() != nil {
		t.Errorf("BatchSize() = %d, File() = %v", d.BatchSize(), d.File())
	}

	// Read fills the caller's buffers at the caller's offset.
	src, dst := netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2")
	pkt := tuntest.UDP(src, dst, []byte("through the adapter"))
	if n, _ := b.Send([][]byte{pkt}, 0); n != 1 {
		t.Fatal("Send on the far end failed")
	}
	bufs, sizes := [][]byte{make([]byte, 16+1280)}, []int{0}
	n, err := d.Read(bufs, sizes, 16)
	if n != 1 || err != nil || !bytes.Equal(bufs[0][16:16+sizes[0]], pkt) {
		t.Fatalf("Read = %d, %v, %x", n, err, bufs[0][16:16+sizes[0]])
	}

	// Write splits batches larger than the Tun's BatchSize.
	var out [][]byte
	for i := range 10 {
		out = append(out, append(make([]byte, 16), tuntest.UDP(src, dst, []byte{byte(i)})...))
	}
	if n, err := d.Write(out, 16); n != 10 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	got := 0
	in, insz := make([][]byte, 4), make([]int, 4)
	for i := range in {
		in[i] = make([]byte, 1280)
	}
	for got < 10 {
		n, err := b.PollRecvMany(context.Background(), in, insz, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if !bytes.Equal(in[i][:insz[i]], out[got][16:]) {
				t.Fatalf("packet %d differs", got)
			}
			got++
		}
	}

	// Close unblocks a pending Read with an error matching os.ErrClosed.
	readErr := make(chan error, 1)
	go func() {
		_, err := d.Read(bufs, sizes, 16)
		readErr <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-readErr:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("Read after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read not unblocked by Close")
	}
	if _, err := d.Write(out[:1], 16); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: %v, want os.ErrClosed", err)
	}
	if _, ok := <-d.Events(); ok {
		t.Error("Events channel not closed by Close")
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := a.PollRecvMany(context.Background(), bufs, sizes, 0); !errors.Is(err, tun.ErrClosed) {
		t.Errorf("underlying Tun not closed: %v", err)
	}
}

type wgKey [32]byte

func newKeyPair(t testing.TB) (priv, pub wgKey) {
	if _, err := rand.Read(priv[:]); err != nil {
		t.Fatal(err)
	}
	priv[0] &= 248
	priv[31] = priv[31]&127 | 64
	p, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	if err != nil {
		t.Fatal(err)
	}
	copy(pub[:], p)
	return priv, pub
}

func listenPort(t testing.TB, d *device.Device) string {
	cfg, err := d.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(cfg, "\n") {
		if v, ok := strings.CutPrefix(line, "listen_port="); ok {
			return v
		}
	}
	t.Fatal("no listen_port in IpcGet")
	return ""
}

// wgPair is two wireguard-go devices over in-memory binds, each on one end
// of a MemTun pair through the adapter; apps are the other ends (the
// "operating system" side of each device).
type wgPair struct {
	ips  [2]netip.Addr
	devs [2]*device.Device
	apps [2]*tun.MemTun
}

func newWGPair(tb testing.TB) *wgPair {
	tb.Helper()
	p := &wgPair{ips: [2]netip.Addr{netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.2")}}
	binds := bindtest.NewChannelBinds()
	var privs, pubs [2]wgKey
	for i := range 2 {
		privs[i], pubs[i] = newKeyPair(tb)
	}
	for i := range 2 {
		wgEnd, app := tun.NewMemPair(tun.MemConfig{Name: fmt.Sprintf("wg%d", i)})
		p.apps[i] = app
		p.devs[i] = device.NewDevice(NewWireGuardDevice(wgEnd), binds[i], device.NewLogger(device.LogLevelError, fmt.Sprintf("dev%d: ", i)))
		tb.Cleanup(func() {
			p.devs[i].Close()
			app.Close()
		})
		cfg := fmt.Sprintf("private_key=%s\nlisten_port=0\nreplace_peers=true\npublic_key=%s\nallowed_ip=%s/32\n",
			hex.EncodeToString(privs[i][:]), hex.EncodeToString(pubs[1-i][:]), p.ips[1-i])
		if err := p.devs[i].IpcSet(cfg); err != nil {
			tb.Fatalf("IpcSet dev%d: %v", i, err)
		}
		if err := p.devs[i].Up(); err != nil {
			tb.Fatalf("Up dev%d: %v", i, err)
		}
	}
	for i := range 2 {
		cfg := fmt.Sprintf("public_key=%s\nendpoint=127.0.0.1:%s\n", hex.EncodeToString(pubs[1-i][:]), listenPort(tb, p.devs[1-i]))
		if err := p.devs[i].IpcSet(cfg); err != nil {
			tb.Fatalf("IpcSet endpoint dev%d: %v", i, err)
		}
	}
	return p
}

// TestWireGuardOverMemTun moves packets both ways between two wireguard-go
// devices running on the adapter, and checks no goroutine outlives them.
func TestWireGuardOverMemTun(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	t.Run("traffic", func(t *testing.T) { wgTraffic(t, newWGPair(t)) })
}

func wgTraffic(t *testing.T, p *wgPair) {
	ips, apps := p.ips, p.apps
	recv := func(app *tun.MemTun, want [][]byte) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		bufs, sizes := make([][]byte, 128), make([]int, 128)
		for i := range bufs {
			bufs[i] = make([]byte, 1280)
		}
		got := 0
		for got < len(want) {
			n, err := app.PollRecvMany(ctx, bufs, sizes, 0)
			if err != nil {
				t.Fatalf("%s: got %d of %d packets: %v", app.Name(), got, len(want), err)
			}
			for i := range n {
				if !bytes.Equal(bufs[i][:sizes[i]], want[got]) {
					t.Fatalf("%s: packet %d differs:\n got %x\nwant %x", app.Name(), got, bufs[i][:sizes[i]], want[got])
				}
				got++
			}
		}
	}
	send := func(app *tun.MemTun, pkts [][]byte) {
		t.Helper()
		if err := app.SendReady(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n, err := app.Send(pkts, 0); n != len(pkts) || err != nil {
			t.Fatalf("Send = %d, %v", n, err)
		}
	}

	// A ping each way; the first one also drives the handshake.
	for i := range 2 {
		ping := tuntest.ICMPEcho(ips[i], ips[1-i], false, 7, uint16(i), []byte("ping through wireguard"))
		send(apps[i], [][]byte{ping})
		recv(apps[1-i], [][]byte{ping})
	}

	// A batch of UDP packets each way arrives complete and in order.
	for i := range 2 {
		var pkts [][]byte
		for seq := range 64 {
			payload := bytes.Repeat([]byte{byte(seq)}, 100+seq*10)
			pkts = append(pkts, tuntest.UDP(netip.AddrPortFrom(ips[i], 4000), netip.AddrPortFrom(ips[1-i], 5000), payload))
		}
		send(apps[i], pkts)
		recv(apps[1-i], pkts)
	}
}

// TestWireGuardDeviceAllocs checks the adapter adds no allocation: a full
// batch written through it and read back through it.
func TestWireGuardDeviceAllocs(t *testing.T) {
	a, b := tun.NewMemPair(tun.MemConfig{})
	d := NewWireGuardDevice(a)
	defer d.Close()
	defer b.Close()
	const off = 16
	src, dst := netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2")
	out := make([][]byte, MaxBatch)
	in := make([][]byte, MaxBatch)
	for i := range out {
		out[i] = append(make([]byte, off), tuntest.UDP(src, dst, make([]byte, 1000))...)
		in[i] = make([]byte, off+1280)
	}
	sizes := make([]int, MaxBatch)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		// Device → far end: Write, then drain b.
		if n, err := d.Write(out, off); n != MaxBatch || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		for got := 0; got < MaxBatch; {
			n, err := b.PollRecvMany(ctx, in, sizes, off)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
		// Far end → device: Send on b, then Read.
		if n, _ := b.Send(out, off); n != MaxBatch {
			t.Fatalf("Send accepted %d", n)
		}
		for got := 0; got < MaxBatch; {
			n, err := d.Read(in, sizes, off)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per round trip of %d packets, want 0", allocs, MaxBatch)
	}
}

// BenchmarkWireGuardOverMemTun measures one-way throughput of 1280-byte
// packets through two wireguard-go devices on the adapter. bindtest copies
// every datagram and moves one per call, so this is a bound on the adapter
// and MemTun overhead under real WireGuard work, not a network figure.
func BenchmarkWireGuardOverMemTun(b *testing.B) {
	p := newWGPair(b)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const size = 1280
	src, dst := netip.AddrPortFrom(p.ips[0], 4000), netip.AddrPortFrom(p.ips[1], 5000)
	batch := make([][]byte, MaxBatch)
	for i := range batch {
		batch[i] = tuntest.UDP(src, dst, make([]byte, size-28))
	}
	in, sizes := make([][]byte, MaxBatch), make([]int, MaxBatch)
	for i := range in {
		in[i] = make([]byte, size)
	}
	// Handshake first.
	if n, _ := p.apps[0].Send(batch[:1], 0); n != 1 {
		b.Fatal("Send failed")
	}
	if _, err := p.apps[1].PollRecvMany(ctx, in, sizes, 0); err != nil {
		b.Fatal(err)
	}

	total := b.N * MaxBatch
	got := make(chan int, 1)
	go func() {
		n := 0
		for n < total {
			// A quiet second means the rest was lost; report what came.
			rctx, rcancel := context.WithTimeout(ctx, time.Second)
			k, err := p.apps[1].PollRecvMany(rctx, in, sizes, 0)
			rcancel()
			if err != nil {
				break
			}
			n += k
		}
		got <- n
	}()
	b.SetBytes(MaxBatch * size)
	b.ResetTimer()
	for range b.N {
		if err := p.apps[0].SendReady(ctx); err != nil {
			b.Fatal(err)
		}
		p.apps[0].Send(batch, 0)
	}
	n := <-got
	b.StopTimer()
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(n)/sec, "pkts/s")
	b.ReportMetric(float64(n)*size*8/sec/1e9, "Gbit/s")
	b.ReportMetric(float64(total-n)/float64(total)*100, "%lost")
}
