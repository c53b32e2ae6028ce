package snownet

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
)

// processCPU is the user plus system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// wgShaped is a WireGuard-transport-looking datagram of size bytes
// carrying seq, so that the classifier hands it to WireGuard.
func wgShaped(size int, seq uint32) []byte {
	p := make([]byte, size)
	p[0] = 4
	binary.BigEndian.PutUint32(p[8:12], seq)
	return p
}

// gsoSender is a loopback UDP socket that can send UDP GSO datagrams.
type gsoSender struct {
	fd   int
	dst  unix.Sockaddr
	from netip.AddrPort
}

func newGSOSender(t *testing.T, port uint16) *gsoSender {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	return &gsoSender{
		fd:   fd,
		dst:  &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(port)},
		from: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port)),
	}
}

// send sends segs as one datagram with UDP_SEGMENT = len(segs[0]) (GSO)
// when there are several, or plainly.
func (s *gsoSender) send(t *testing.T, segs [][]byte) {
	t.Helper()
	var buf []byte
	for _, p := range segs {
		buf = append(buf, p...)
	}
	var oob []byte
	if len(segs) > 1 {
		oob = make([]byte, unix.CmsgSpace(2))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
		h.SetLen(unix.CmsgLen(2))
		binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(len(segs[0])))
	}
	if err := unix.Sendmsg(s.fd, buf, oob, s.dst, 0); err != nil {
		t.Fatalf("sendmsg: %v", err)
	}
}

func openTestBind(t *testing.T) (*Bind, conn.ReceiveFunc, uint16) {
	t.Helper()
	b := NewBind(BindConfig{})
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if len(b.readers) == 0 {
		t.Fatal("the batched reader did not replace StdNetBind's receive")
	}
	return b, fns[0], port // fns[0]: the IPv4 socket
}

type recvBatch struct {
	bufs  [][]byte
	sizes []int
	eps   []conn.Endpoint
}

func newRecvBatch() *recvBatch {
	r := &recvBatch{bufs: make([][]byte, conn.IdealBatchSize), sizes: make([]int, conn.IdealBatchSize), eps: make([]conn.Endpoint, conn.IdealBatchSize)}
	for i := range r.bufs {
		r.bufs[i] = make([]byte, device.MaxMessageSize)
	}
	return r
}

// The batched reader takes many plain datagrams per call (StdNetBind with
// GRO on took two), splits GRO-coalesced datagrams, carries a batch's
// overflow into the next call, keeps order, and names the source.
func TestBatchReaderSplitsAndBatches(t *testing.T) {
	_, recv, port := openTestBind(t)
	s := newGSOSender(t, port)
	var want []uint32
	seq := uint32(0)
	// 3 GSO datagrams of 64 segments (192 packets: more than one batch),
	// one with a short last segment, then 40 plain datagrams.
	for d := 0; d < 3; d++ {
		var segs [][]byte
		for i := 0; i < 64; i++ {
			size := 200
			if d == 1 && i == 63 {
				size = 64
			}
			segs = append(segs, wgShaped(size, seq))
			want = append(want, seq)
			seq++
		}
		s.send(t, segs)
	}
	for i := 0; i < 40; i++ {
		s.send(t, [][]byte{wgShaped(300, seq)})
		want = append(want, seq)
		seq++
	}
	rb := newRecvBatch()
	var got []uint32
	maxPlain := 0
	for calls := 0; len(got) < len(want) && calls < 100; calls++ {
		n, err := recv(rb.bufs, rb.sizes, rb.eps)
		if err != nil {
			t.Fatal(err)
		}
		plain := 0
		for i := 0; i < n; i++ {
			if rb.sizes[i] == 0 {
				continue
			}
			p := rb.bufs[i][:rb.sizes[i]]
			if !isWireGuard(p) {
				t.Fatalf("packet %d is not the datagram sent", i)
			}
			if ap, ok := endpointAddr(rb.eps[i]); !ok || ap != s.from {
				t.Fatalf("source %v, want %v", ap, s.from)
			}
			if len(p) == 300 {
				plain++
			}
			got = append(got, binary.BigEndian.Uint32(p[8:12]))
		}
		maxPlain = max(maxPlain, plain)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d packets, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("packet %d has seq %d, want %d (order)", i, got[i], want[i])
		}
	}
	if maxPlain <= 2 {
		t.Fatalf("at most %d plain datagrams per call; the batched reader should take many", maxPlain)
	}
}

// The receive path allocates nothing per packet: plain datagrams from one
// relay, classified and (for ChannelData) unwrapped.
func TestBatchReaderAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	_, recv, port := openTestBind(t)
	s := newGSOSender(t, port)
	const runs, per = 50, 8
	for i := 0; i < (runs+1)*per; i++ {
		s.send(t, [][]byte{wgShaped(1200, uint32(i))})
	}
	rb := newRecvBatch()
	total := 0
	allocs := testing.AllocsPerRun(runs, func() {
		n, err := recv(rb.bufs[:per], rb.sizes[:per], rb.eps[:per])
		if err != nil {
			t.Fatal(err)
		}
		total += n
	})
	if total == 0 {
		t.Fatal("nothing received")
	}
	if allocs > 0 {
		t.Fatalf("%.1f allocations per receive of %d datagrams, want 0", allocs, per)
	}
}
