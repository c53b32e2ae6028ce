package relay

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
)

// The data plane. One reader goroutine per socket:
//
//   - clientLoop on the listen socket reads client datagrams in batches
//     (recvmmsg). ChannelData goes to its peer out of the allocation's
//     socket: the payload is sent from where it lies in the receive buffer,
//     and consecutive datagrams for the same allocation leave in one
//     sendmmsg. STUN is handed to the control plane inline.
//   - peerLoop on each allocation socket reads peer datagrams at offset 4,
//     so the ChannelData header is written in front of the payload in place,
//     and sends the batch to the client with one sendmmsg on the listen
//     socket.
//
// Lookups (client address → allocation, channel ↔ peer) read atomic
// snapshots that the control plane replaces whole; no lock is taken and
// nothing is allocated per datagram.

const (
	mainBatch     = 64 // messages per recvmmsg on the listen socket
	allocBatch    = 16 // and on an allocation socket
	batchSize     = mainBatch
	bufSize       = 1<<16 + 512 // a whole GRO message plus room for 4 bytes of header per segment
	maxGSOBytes   = 65000       // payload of one UDP_SEGMENT send, under the 65507-byte UDP limit
	maxGSOSegs    = 64
	channelHeader = 4
	minChannel    = 0x4000
	maxChannel    = 0x7FFF
	sockBufSize   = 4 << 20
)

// batchBufs is one reader's receive buffers.
type batchBufs struct {
	bufs  [][]byte // full buffers
	rd    [][]byte // what recvmmsg fills (bufs[i][off:])
	sizes []int
	gso   []int
	from  []netip.AddrPort
}

func newBatchBufs(n, off int) *batchBufs {
	b := &batchBufs{bufs: make([][]byte, n), rd: make([][]byte, n),
		sizes: make([]int, n), gso: make([]int, n), from: make([]netip.AddrPort, n)}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, bufSize)
		b.rd[i] = b.bufs[i][off:]
	}
	return b
}

// clientLoop reads the listen socket until it is closed.
func (s *Server) clientLoop() {
	defer s.wg.Done()
	w := newBatchWriter(mainBatch)
	w.noGSO = s.cfg.NoOffloads
	s.readLoop(s.main, mainBatch, 0, func(b *batchBufs, n int) {
		s.handleClientBatch(b.rd[:n], b.sizes[:n], b.gso[:n], b.from[:n], w)
	})
}

// readLoop reads sock in batches of up to size messages, each at offset
// off of its buffer, and hands every batch to handle, until the socket is
// closed. Other read errors are counted as drops.
func (s *Server) readLoop(sock *sock, size, off int, handle func(b *batchBufs, n int)) {
	r := newBatchReader(sock, size)
	b := newBatchBufs(size, off)
	for {
		n, err := r.read(b.rd, b.sizes, b.gso, b.from)
		if err != nil {
			if isClosed(err) {
				return
			}
			s.dropped.Add(1)
			continue
		}
		handle(b, n)
	}
}

// run is a stretch of ChannelData payloads for one peer, compacted
// contiguously in a receive buffer, that leaves as one (GSO) message.
type run struct {
	a          *allocation
	peer       netip.AddrPort
	seg        int // payload size of every segment but the last
	start, end int
	n          int
	closed     bool // the last segment was shorter: nothing may follow
}

// handleClientBatch handles one batch from clients. Message i holds one
// datagram, or several of gso[i] bytes each (UDP_GRO). ChannelData
// payloads are compacted in place (each drops its 4-byte header) so that
// consecutive payloads for the same peer leave as one UDP_SEGMENT message;
// messages for one allocation socket share a sendmmsg. Only clientLoop
// (and tests, which then own w) call it.
func (s *Server) handleClientBatch(bufs [][]byte, sizes, gso []int, from []netip.AddrPort, w *batchWriter) {
	clients := *s.clients.Load()
	var cur *allocation
	var relayed, dropped uint64
	emit := func(buf []byte, r *run) {
		if r.n == 0 {
			return
		}
		if r.a != cur {
			w.begin(r.a.sock)
			cur = r.a
		}
		seg := 0
		if r.n > 1 {
			seg = r.seg
		}
		w.add(buf[r.start:r.end], r.peer, seg)
		r.n = 0
	}
	for i, buf := range bufs {
		n := sizes[i]
		if n <= 0 {
			dropped++
			continue
		}
		buf = buf[:n]
		g := gso[i]
		if g <= 0 || g > n {
			g = n
		}
		var r run
		wpos := 0
		for off := 0; off < n; off += g {
			p := buf[off:min(off+g, n)]
			if len(p) >= channelHeader && p[0]&0xC0 == 0x40 { // channel numbers 0x4000–0x7FFF
				a := clients[from[i]]
				if a == nil {
					dropped++
					continue
				}
				l := int(binary.BigEndian.Uint16(p[2:4]))
				peer, ok := a.channels.Load().byNum[binary.BigEndian.Uint16(p[0:2])]
				if !ok || channelHeader+l > len(p) {
					dropped++
					continue
				}
				if r.n == 0 || r.a != a || r.peer != peer || r.closed || l > r.seg || r.n == maxGSOSegs {
					emit(buf, &r)
					r = run{a: a, peer: peer, seg: l, start: wpos}
				}
				copy(buf[wpos:], p[channelHeader:channelHeader+l]) // wpos <= off: moves left
				wpos += l
				r.end, r.closed = wpos, l < r.seg
				r.n++
				relayed++
				continue
			}
			emit(buf, &r)
			if isSTUN(p) {
				// In order with the data before it; the control plane may
				// also close sockets, so nothing stays queued across it.
				if cur != nil {
					w.flush()
					cur = nil
				}
				s.handleSTUN(p, from[i])
				clients = *s.clients.Load()
				continue
			}
			dropped++
		}
		emit(buf, &r)
	}
	if cur != nil {
		w.flush()
	}
	s.account(w, &s.toPeers, relayed, dropped)
}

// isSTUN: two zero bits, the magic cookie, a length that is a multiple of
// 4 and fits the datagram.
func isSTUN(p []byte) bool {
	return len(p) >= 20 && p[0]&0xC0 == 0 && binary.BigEndian.Uint32(p[4:8]) == 0x2112A442 &&
		int(binary.BigEndian.Uint16(p[2:4]))+20 <= len(p) && p[3]&3 == 0
}

// peerLoop reads an allocation's socket until it is closed.
func (s *Server) peerLoop(a *allocation) {
	defer s.wg.Done()
	w := newBatchWriter(allocBatch * 2)
	w.noGSO = s.cfg.NoOffloads
	w.begin(s.main)
	s.readLoop(a.sock, allocBatch, channelHeader, func(b *batchBufs, n int) {
		s.handlePeerBatch(a, b.bufs[:n], b.sizes[:n], b.gso[:n], b.from[:n], w)
	})
}

// handlePeerBatch frames a batch of peer messages (each at offset 4 of
// its buffer; one datagram, or several of gso[i] bytes) as ChannelData in
// place and sends them to a's client: segments move right by 4 bytes each
// to make room for their headers, and a message's segments leave as one
// UDP_SEGMENT message. Peers without a channel but with a permission get
// Data indications; the rest is dropped. Only a's peerLoop (or a test
// owning w) calls it.
func (s *Server) handlePeerBatch(a *allocation, bufs [][]byte, sizes, gso []int, from []netip.AddrPort, w *batchWriter) {
	tab := a.channels.Load()
	var relayed, dropped uint64
	for i, buf := range bufs {
		n := sizes[i]
		if n < 0 || channelHeader+n > len(buf) {
			dropped++
			continue
		}
		g := gso[i]
		if g <= 0 || g > n {
			g = n
		}
		num, ok := tab.byPeer[from[i]]
		if !ok || n == 0 {
			if !a.permitted(from[i].Addr(), s.cfg.Now()) {
				dropped++
				continue
			}
			w.flush() // keep order with what is queued
			for off := 0; off < n; off += g {
				s.sendData(a, from[i], buf[channelHeader+off:channelHeader+min(off+g, n)])
			}
			if n == 0 {
				s.sendData(a, from[i], nil)
			}
			continue
		}
		nseg := (n + g - 1) / g
		if nseg*channelHeader+n > len(buf) {
			dropped += uint64(nseg)
			continue
		}
		// Last segment first: each moves right onto its final place.
		for k := nseg - 1; k >= 0; k-- {
			src := channelHeader + k*g
			l := min(g, n-k*g)
			dst := k * (g + channelHeader)
			copy(buf[dst+channelHeader:dst+channelHeader+l], buf[src:src+l])
			binary.BigEndian.PutUint16(buf[dst:dst+2], num)
			binary.BigEndian.PutUint16(buf[dst+2:dst+4], uint16(l))
		}
		stride := g + channelHeader
		total := n + nseg*channelHeader
		per := max(1, min(maxGSOSegs, maxGSOBytes/stride))
		for k := 0; k < nseg; k += per {
			end := min(total, (k+per)*stride)
			seg := 0
			if min(per, nseg-k) > 1 {
				seg = stride
			}
			w.add(buf[k*stride:end], a.client, seg)
		}
		relayed += uint64(nseg)
	}
	w.flush()
	s.account(w, &s.toClients, relayed, dropped)
}

// account adds a handled batch's relayed datagrams to the counter fwd and
// its dropped ones, with those the writer could not send, to s.dropped:
// one atomic add each per batch, none per datagram.
func (s *Server) account(w *batchWriter, fwd *atomic.Uint64, relayed, dropped uint64) {
	if relayed > 0 {
		fwd.Add(relayed)
	}
	dropped += w.dropped
	w.dropped = 0
	if dropped > 0 {
		s.dropped.Add(dropped)
	}
}
