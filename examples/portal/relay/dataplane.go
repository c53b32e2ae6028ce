package relay

import (
	"encoding/binary"
	"net/netip"
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
	batchSize     = 64
	bufSize       = 2048 // WireGuard over TURN stays far below; larger datagrams are dropped and counted
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
	from  []netip.AddrPort
}

func newBatchBufs(off int) *batchBufs {
	b := &batchBufs{bufs: make([][]byte, batchSize), rd: make([][]byte, batchSize),
		sizes: make([]int, batchSize), from: make([]netip.AddrPort, batchSize)}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, bufSize)
		b.rd[i] = b.bufs[i][off:]
	}
	return b
}

// clientLoop reads the listen socket until it is closed.
func (s *Server) clientLoop() {
	defer s.wg.Done()
	r := newBatchReader(s.main, batchSize)
	b := newBatchBufs(0)
	w := newBatchWriter(batchSize)
	for {
		n, err := r.read(b.rd, b.sizes, b.from)
		if err != nil {
			if isClosed(err) {
				return
			}
			s.dropped.Add(1)
			continue
		}
		s.handleClientBatch(b.rd[:n], b.sizes[:n], b.from[:n], w)
	}
}

// handleClientBatch handles one batch from clients. Only clientLoop (and
// tests, which then own w) call it.
func (s *Server) handleClientBatch(bufs [][]byte, sizes []int, from []netip.AddrPort, w *batchWriter) {
	clients := *s.clients.Load()
	var cur *allocation
	var relayed, dropped uint64
	for i, p := range bufs {
		if sizes[i] < 0 {
			dropped++
			continue
		}
		p = p[:sizes[i]]
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
			if a != cur {
				w.begin(a.sock)
				cur = a
			}
			w.add(p[channelHeader:channelHeader+l], peer)
			relayed++
			continue
		}
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
	if cur != nil {
		w.flush()
	}
	if relayed > 0 {
		s.toPeers.Add(relayed)
	}
	dropped += w.dropped
	w.dropped = 0
	if dropped > 0 {
		s.dropped.Add(dropped)
	}
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
	r := newBatchReader(a.sock, batchSize)
	b := newBatchBufs(channelHeader)
	w := newBatchWriter(batchSize)
	w.begin(s.main)
	for {
		n, err := r.read(b.rd, b.sizes, b.from)
		if err != nil {
			if isClosed(err) {
				return
			}
			s.dropped.Add(1)
			continue
		}
		s.handlePeerBatch(a, b.bufs[:n], b.sizes[:n], b.from[:n], w)
	}
}

// handlePeerBatch frames a batch of peer datagrams (each at offset 4 of
// its buffer) as ChannelData in place and sends them to a's client. Peers
// without a channel but with a permission get a Data indication; the rest
// is dropped. Only a's peerLoop (or a test owning w) calls it.
func (s *Server) handlePeerBatch(a *allocation, bufs [][]byte, sizes []int, from []netip.AddrPort, w *batchWriter) {
	tab := a.channels.Load()
	var relayed, dropped uint64
	for i, buf := range bufs {
		n := sizes[i]
		if n < 0 {
			dropped++
			continue
		}
		num, ok := tab.byPeer[from[i]]
		if !ok {
			if a.permitted(from[i].Addr(), s.cfg.Now()) {
				w.flush() // keep order with what is queued
				s.sendData(a, from[i], buf[channelHeader:channelHeader+n])
			} else {
				dropped++
			}
			continue
		}
		binary.BigEndian.PutUint16(buf[0:2], num)
		binary.BigEndian.PutUint16(buf[2:4], uint16(n))
		w.add(buf[:channelHeader+n], a.client)
		relayed++
	}
	w.flush()
	if relayed > 0 {
		s.toClients.Add(relayed)
	}
	dropped += w.dropped
	w.dropped = 0
	if dropped > 0 {
		s.dropped.Add(dropped)
	}
}
