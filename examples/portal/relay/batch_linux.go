package relay

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Linux batch I/O: recvmmsg and sendmmsg on the socket's file descriptor
// through syscall.RawConn, so Go's poller still parks the goroutine while
// the socket is empty (or full). Headers, iovecs and socket addresses are
// allocated once per reader/writer; a batch costs no allocation (the
// RawConn callbacks are method values made once, and addresses are
// decoded straight from the raw sockaddr).

// sock is a UDP socket with what batch I/O needs to know about it.
type sock struct {
	conn *net.UDPConn
	rc   syscall.RawConn
	v6   bool // AF_INET6: destinations are written as sockaddr_in6 (v4-mapped for IPv4)
}

func newSock(c *net.UDPConn) (*sock, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	s := &sock{conn: c, rc: rc}
	var domain int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	s.v6 = domain == unix.AF_INET6
	return s, nil
}

// setBuffers raises the socket's receive and send buffers to n bytes: the
// FORCE variants (root / CAP_NET_ADMIN) ignore rmem_max/wmem_max, the
// plain ones are the fallback. Failures only cost throughput.
func (s *sock) setBuffers(n int) {
	_ = s.rc.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], n) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], n)
			}
		}
	})
}

// enableGRO asks the kernel to hand over runs of same-sized datagrams of
// one flow as one buffer (UDP_GRO); read reports the segment size. A
// sender's GSO batch then crosses the stack once instead of per datagram.
func (s *sock) enableGRO() bool {
	var serr error
	if err := s.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1)
	}); err != nil {
		return false
	}
	return serr == nil
}

// gsoOff is set once the kernel refused a UDP_SEGMENT send; from then on
// batches are sent one datagram per message.
var gsoOff atomic.Bool

const cmsgSpace = 32 // room for one UDP_GRO (int) or UDP_SEGMENT (uint16) control message

// batchReader reads datagrams with recvmmsg. It is owned by one goroutine.
type batchReader struct {
	s     *sock
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	ctrl  [][cmsgSpace]byte
	k, n  int
	err   error
	fn    func(fd uintptr) bool
}

func newBatchReader(s *sock, size int) *batchReader {
	r := &batchReader{s: s, hdrs: make([]unix.Mmsghdr, size), iovs: make([]unix.Iovec, size),
		names: make([]unix.RawSockaddrInet6, size), ctrl: make([][cmsgSpace]byte, size)}
	r.fn = r.recv
	return r
}

// read blocks until at least one datagram is there and reads up to
// len(bufs) messages: message i into bufs[i], its length into sizes[i]
// (-1 when it did not fit and was truncated), its source into from[i] and
// into gso[i] the segment size when the kernel coalesced several
// datagrams into it (UDP_GRO; 0 otherwise: one datagram).
func (r *batchReader) read(bufs [][]byte, sizes, gso []int, from []netip.AddrPort) (int, error) {
	k := min(len(bufs), len(r.hdrs))
	for i := 0; i < k; i++ {
		r.iovs[i].Base = &bufs[i][0]
		r.iovs[i].SetLen(len(bufs[i]))
		h := &r.hdrs[i]
		h.Hdr.Iov = &r.iovs[i]
		h.Hdr.SetIovlen(1)
		h.Hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Hdr.Namelen = unix.SizeofSockaddrInet6
		h.Hdr.Control = &r.ctrl[i][0]
		h.Hdr.SetControllen(cmsgSpace)
		h.Hdr.Flags = 0
		h.Len = 0
	}
	r.k, r.n, r.err = k, 0, nil
	if err := r.s.rc.Read(r.fn); err != nil {
		return 0, err
	}
	if r.err != nil {
		return 0, r.err
	}
	for i := 0; i < r.n; i++ {
		sizes[i] = int(r.hdrs[i].Len)
		if r.hdrs[i].Hdr.Flags&unix.MSG_TRUNC != 0 {
			sizes[i] = -1
		}
		from[i] = rawToAddrPort(&r.names[i])
		gso[i] = groSize(r.ctrl[i][:r.hdrs[i].Hdr.Controllen])
	}
	return r.n, nil
}

// groSize finds the UDP_GRO segment size in a control buffer (0: none).
func groSize(b []byte) int {
	for len(b) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(b) {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && l >= unix.CmsgLen(4) {
			return int(*(*int32)(unsafe.Pointer(&b[unix.CmsgLen(0)])))
		}
		sp := unix.CmsgSpace(l - unix.CmsgLen(0))
		if sp > len(b) {
			return 0
		}
		b = b[sp:]
	}
	return 0
}

func (r *batchReader) recv(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(r.k),
			unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			r.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // park until readable
		default:
			r.err = e
			return true
		}
	}
}

func rawToAddrPort(rsa *unix.RawSockaddrInet6) netip.AddrPort {
	switch rsa.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		pb := (*[2]byte)(unsafe.Pointer(&p.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), uint16(pb[0])<<8|uint16(pb[1]))
	case unix.AF_INET6:
		pb := (*[2]byte)(unsafe.Pointer(&rsa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(rsa.Addr).Unmap(), uint16(pb[0])<<8|uint16(pb[1]))
	}
	return netip.AddrPort{}
}

// batchWriter collects datagrams for one socket and sends them with
// sendmmsg. It is owned by one goroutine; several writers may target the
// same socket concurrently (the kernel serialises them).
type batchWriter struct {
	s       *sock
	hdrs    []unix.Mmsghdr
	iovs    []unix.Iovec
	names   []unix.RawSockaddrInet6
	ctrl    [][cmsgSpace]byte
	gso     []bool
	noGSO   bool // send every datagram as its own message
	n, off  int
	dropped uint64 // datagrams the kernel refused or that had no address of the socket's family
	fn      func(fd uintptr) bool
}

func newBatchWriter(size int) *batchWriter {
	w := &batchWriter{hdrs: make([]unix.Mmsghdr, size), iovs: make([]unix.Iovec, size),
		names: make([]unix.RawSockaddrInet6, size), ctrl: make([][cmsgSpace]byte, size), gso: make([]bool, size)}
	w.fn = w.send
	return w
}

// begin flushes what is pending and targets s.
func (w *batchWriter) begin(s *sock) {
	if w.s != s {
		w.flush()
		w.s = s
	}
}

// add queues b (which must stay untouched until the next flush) for to,
// flushing first when the batch is full. seg > 0 means b is several
// datagrams of seg bytes each (the last may be shorter), sent as one
// UDP_SEGMENT message.
func (w *batchWriter) add(b []byte, to netip.AddrPort, seg int) {
	if seg >= len(b) {
		seg = 0
	}
	if seg > 0 && (w.noGSO || gsoOff.Load()) {
		for len(b) > 0 {
			k := min(seg, len(b))
			w.add(b[:k], to, 0)
			b = b[k:]
		}
		return
	}
	if w.n == len(w.hdrs) {
		w.flush()
	}
	i := w.n
	h := &w.hdrs[i]
	rsa := &w.names[i]
	ip := to.Addr()
	if w.s.v6 {
		*rsa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16()}
		pb := (*[2]byte)(unsafe.Pointer(&rsa.Port))
		pb[0], pb[1] = byte(to.Port()>>8), byte(to.Port())
		h.Hdr.Namelen = unix.SizeofSockaddrInet6
	} else {
		if !ip.Is4() && !ip.Is4In6() {
			w.dropped++
			return
		}
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		*p = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.Unmap().As4()}
		pb := (*[2]byte)(unsafe.Pointer(&p.Port))
		pb[0], pb[1] = byte(to.Port()>>8), byte(to.Port())
		h.Hdr.Namelen = unix.SizeofSockaddrInet4
	}
	w.iovs[i].Base = unsafe.SliceData(b)
	w.iovs[i].SetLen(len(b))
	h.Hdr.Iov = &w.iovs[i]
	h.Hdr.SetIovlen(1)
	h.Hdr.Name = (*byte)(unsafe.Pointer(rsa))
	h.Hdr.Control = nil
	h.Hdr.Controllen = 0
	h.Hdr.Flags = 0
	w.gso[i] = seg > 0
	if seg > 0 {
		c := w.ctrl[i][:]
		ch := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
		ch.Level, ch.Type = unix.SOL_UDP, unix.UDP_SEGMENT
		ch.SetLen(unix.CmsgLen(2))
		*(*uint16)(unsafe.Pointer(&c[unix.CmsgLen(0)])) = uint16(seg)
		h.Hdr.Control = &c[0]
		h.Hdr.SetControllen(unix.CmsgSpace(2))
	}
	w.n++
}

// flush sends everything queued. A datagram the kernel refuses (e.g. no
// route) is skipped and counted; the others still go. Errors of a closed
// socket drop the batch.
func (w *batchWriter) flush() {
	if w.n == 0 {
		return
	}
	w.off = 0
	if err := w.s.rc.Write(w.fn); err != nil {
		w.dropped += uint64(w.n - w.off)
	}
	w.n, w.off = 0, 0
}

func (w *batchWriter) send(fd uintptr) bool {
	for w.off < w.n {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.hdrs[w.off])), uintptr(w.n-w.off),
			unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			w.off += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false // park until writable
		default:
			// The first message failed: skip it. A UDP_SEGMENT message
			// refused for its segmentation turns GSO off for good.
			if w.gso[w.off] && (e == unix.EIO || e == unix.EINVAL) {
				gsoOff.Store(true)
			}
			w.dropped++
			w.off++
		}
	}
	return true
}

// isClosed reports whether err means the socket was closed under us.
func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }
