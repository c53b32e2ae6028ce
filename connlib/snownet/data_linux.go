package snownet

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
)

// This file is the receive side of the shared sockets on Linux. StdNetBind
// keeps its sockets, its Send (sendmmsg, UDP GSO) and its socket options,
// but its receive is replaced, because it is built for GRO-coalesced
// input only: with UDP GRO on it reads TWO datagrams per recvmmsg (room
// for 2x64 segments in a 128-packet batch) and allocates a net.UDPAddr and
// a StdNetEndpoint per datagram. Direct traffic from a GSO sender arrives
// coalesced, so that costs little; relayed traffic arrives one datagram
// per packet (TURN relays forward packet by packet), so it cost one
// syscall, one wake-up and three allocations per two packets, which was
// most of the 3x CPU per byte of the relayed path.
//
// batchReader reads up to batchReaderMsgs datagrams per recvmmsg into its
// own 64 KiB buffers (each may be a GRO super-datagram), splits them into
// wireguard-go's buffers across as many calls as needed (nothing is
// dropped when a batch overflows), and hands out one immutable endpoint
// per source address from a small cache. It reads a dup of StdNetBind's
// socket registered with the Go poller, so blocking, deadlines and Close
// behave like a net.UDPConn.

// batchReaderMsgs is how many datagrams one recvmmsg takes.
const batchReaderMsgs = 32

// batchReaderBufSize holds the largest UDP datagram (a GRO super-datagram).
const batchReaderBufSize = 1 << 16

// batchReaderOOB is room for UDP_GRO plus IP_PKTINFO/IPV6_PKTINFO cmsgs.
const batchReaderOOB = 128

// batchReaderEndpoints is the size of the source endpoint cache.
const batchReaderEndpoints = 16

// batchReader is the ReceiveFunc of one shared socket.
//
// Concurrency: receive is called by one goroutine (wireguard-go runs one
// per ReceiveFunc); close may be called from any goroutine and makes a
// blocked receive return net.ErrClosed.
type batchReader struct {
	pc *net.UDPConn
	rc syscall.RawConn
	v6 bool

	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	oob   []byte
	data  []byte // batchReaderMsgs * batchReaderBufSize

	readFn func(fd uintptr) bool // r.doRead, made once (a method value allocates)
	rerr   error

	count  int // datagrams read by the last recvmmsg
	head   int // next datagram to hand out
	segOff int // offset of the next segment in datagram head
	gso    int // segment size of datagram head (0: not coalesced)
	ep     *conn.StdNetEndpoint

	epCache [batchReaderEndpoints]*conn.StdNetEndpoint
	epNext  int
}

// openBatchReaders returns a batchReader for each of this process's UDP
// sockets bound to port (StdNetBind's v4 and v6 sockets, just opened).
func openBatchReaders(port uint16) ([]*batchReader, error) {
	var out []*batchReader
	var firstErr error
	forEachUDPSocket(port, func(fd int) {
		if firstErr != nil {
			return
		}
		r, err := newBatchReader(fd)
		if err != nil {
			firstErr = err
			return
		}
		out = append(out, r)
	})
	if firstErr != nil {
		for _, r := range out {
			r.close()
		}
		return nil, firstErr
	}
	return out, nil
}

func newBatchReader(fd int) (*batchReader, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, err
	}
	_, v6 := sa.(*unix.SockaddrInet6)
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(nfd), "snownet-udp")
	c, err := net.FilePacketConn(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	pc, ok := c.(*net.UDPConn)
	if !ok {
		c.Close()
		return nil, errors.New("snownet: shared socket is not UDP")
	}
	rc, err := pc.SyscallConn()
	if err != nil {
		pc.Close()
		return nil, err
	}
	r := &batchReader{
		pc:    pc,
		rc:    rc,
		v6:    v6,
		hdrs:  make([]unix.Mmsghdr, batchReaderMsgs),
		iovs:  make([]unix.Iovec, batchReaderMsgs),
		names: make([]unix.RawSockaddrInet6, batchReaderMsgs),
		oob:   make([]byte, batchReaderMsgs*batchReaderOOB),
		data:  make([]byte, batchReaderMsgs*batchReaderBufSize),
	}
	for i := range r.hdrs {
		r.iovs[i].Base = &r.data[i*batchReaderBufSize]
		r.iovs[i].SetLen(batchReaderBufSize)
		h := &r.hdrs[i].Hdr
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Control = &r.oob[i*batchReaderOOB]
	}
	r.readFn = r.doRead
	return r, nil
}

func (r *batchReader) close() error { return r.pc.Close() }

// doRead is the RawConn.Read callback: one non-blocking recvmmsg.
// It returns false (wait for readability) on EAGAIN.
func (r *batchReader) doRead(fd uintptr) bool {
	for i := range r.hdrs {
		h := &r.hdrs[i].Hdr
		h.Namelen = unix.SizeofSockaddrInet6
		h.SetControllen(batchReaderOOB)
		h.Flags = 0
		r.hdrs[i].Len = 0
	}
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])),
			uintptr(len(r.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			r.count, r.head, r.segOff, r.rerr = int(n), 0, 0, nil
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			r.count, r.rerr = 0, errno
			return true
		}
	}
}

// receive is the conn.ReceiveFunc: it blocks until at least one datagram
// is there, then fills bufs with as many packets (GRO segments split) as
// are buffered, up to len(bufs).
func (r *batchReader) receive(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	for r.head >= r.count {
		if err := r.rc.Read(r.readFn); err != nil {
			return 0, err
		}
		if r.rerr != nil {
			return 0, r.rerr
		}
		r.startDatagram()
	}
	n := 0
	for n < len(bufs) && r.head < r.count {
		h := &r.hdrs[r.head]
		size := int(h.Len)
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 || size > batchReaderBufSize {
			size = 0 // truncated: drop it
		}
		dg := r.data[r.head*batchReaderBufSize : r.head*batchReaderBufSize+size]
		end := size
		if r.gso > 0 && r.segOff+r.gso < end {
			end = r.segOff + r.gso
		}
		seg := dg[r.segOff:end]
		if len(seg) > 0 && len(seg) <= len(bufs[n]) {
			sizes[n] = copy(bufs[n], seg)
			eps[n] = r.ep
			n++
		}
		r.segOff = end
		if r.segOff >= size {
			r.head++
			r.segOff = 0
			if r.head < r.count {
				r.startDatagram()
			}
		}
	}
	return n, nil
}

// startDatagram reads the source address and GRO segment size of datagram
// r.head.
func (r *batchReader) startDatagram() {
	if r.head >= r.count {
		return
	}
	h := &r.hdrs[r.head].Hdr
	r.gso = groSize(r.oob[r.head*batchReaderOOB : r.head*batchReaderOOB+int(h.Controllen)])
	r.ep = r.endpoint(sockaddrAddrPort(&r.names[r.head]))
}

// endpoint returns a cached immutable endpoint for ap (allocating only on
// a miss: a new source address).
func (r *batchReader) endpoint(ap netip.AddrPort) *conn.StdNetEndpoint {
	for _, e := range r.epCache {
		if e != nil && e.AddrPort == ap {
			return e
		}
	}
	e := &conn.StdNetEndpoint{AddrPort: ap}
	r.epCache[r.epNext] = e
	r.epNext = (r.epNext + 1) % len(r.epCache)
	return e
}

// sockaddrAddrPort decodes a sockaddr_in or sockaddr_in6 the kernel wrote.
func sockaddrAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), binary.BigEndian.Uint16(p[:]))
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), binary.BigEndian.Uint16(p[:]))
	}
	return netip.AddrPort{}
}

// groSize returns the UDP_GRO segment size in the control messages (0 if
// the datagram was not coalesced). It parses without allocating.
func groSize(oob []byte) int {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && l >= unix.CmsgLen(2) {
			v := oob[unix.CmsgLen(0):l]
			if len(v) >= 4 {
				return int(*(*int32)(unsafe.Pointer(&v[0])))
			}
			return int(*(*uint16)(unsafe.Pointer(&v[0])))
		}
		adv := unix.CmsgSpace(l - unix.SizeofCmsghdr)
		if adv > len(oob) {
			return 0
		}
		oob = oob[adv:]
	}
	return 0
}

// openReaders replaces StdNetBind's receive functions fns with batched
// readers on the same sockets (bound to port). It keeps fns if a socket
// cannot be read that way. The caller holds b.mu.
func (b *Bind) openReaders(port uint16, fns []conn.ReceiveFunc) []conn.ReceiveFunc {
	if b.stdReceive || os.Getenv("SNOWNET_STD_RECEIVE") == "1" {
		// The env override is for A/B comparisons in examples/bench.
		return fns
	}
	rs, err := openBatchReaders(port)
	if err == nil && len(rs) != len(fns) {
		err = errors.New("socket count differs from StdNetBind's")
	}
	if err != nil {
		for _, r := range rs {
			r.close()
		}
		b.log.Debug("batched receive unavailable, using StdNetBind's", zap.Error(err))
		return fns
	}
	b.readers = rs
	out := make([]conn.ReceiveFunc, len(rs))
	for i, r := range rs {
		out[i] = r.receive
	}
	return out
}

// closeReaders closes the batched readers; their receive returns
// net.ErrClosed. The caller holds b.mu.
func (b *Bind) closeReaders() {
	for _, r := range b.readers {
		r.close()
	}
	b.readers = nil
}
