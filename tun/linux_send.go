//go:build linux

package tun

import (
	"context"
	"errors"
	"os"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// virtioNetHdrLen is the size of the legacy virtio-net header wireguard-go
// writes in front of every packet on a device with IFF_VNET_HDR.
const virtioNetHdrLen = 10

// writeJob is one group of Send's batch for one queue, written by that
// queue's write worker while Send writes another group itself.
type writeJob struct {
	bufs   [][]byte
	offset int
	done   chan writeResult
}

type writeResult struct {
	accepted int
	closed   bool
}

// sendScratch is per-Send-call scratch space, kept on a free list so Send
// does not allocate: the per-queue groups and the channel parallel groups
// report on. (A free list rather than sync.Pool: it survives GCs, so the
// steady state allocates nothing at all.)
type sendScratch struct {
	groups [][][]byte // [queue][]packet buffers, in Send order
	done   chan writeResult
	// one is a single-element batch for packets written through bounce
	// (when the caller's offset leaves no room for the virtio header).
	one    [1][]byte
	bounce []byte
}

func (t *LinuxTun) getScratch() *sendScratch {
	select {
	case s := <-t.scratch:
		return s
	default:
	}
	s := &sendScratch{groups: make([][][]byte, len(t.queues)), done: make(chan writeResult, len(t.queues))}
	for i := range s.groups {
		s.groups[i] = make([][]byte, 0, linuxBatch)
	}
	return s
}

func (t *LinuxTun) putScratch(s *sendScratch) {
	for i := range s.groups {
		clear(s.groups[i]) // drop references to the caller's buffers
		s.groups[i] = s.groups[i][:0]
	}
	select {
	case t.scratch <- s:
	default: // more concurrent Sends than slots: let the GC have it
	}
}

// SendReady implements connlib.Tun. A kernel TUN never holds packets for
// us (each write is processed synchronously by the kernel), so there is no
// full state to wait for: it returns nil at once unless ctx is done or the
// device is closed. Send's own duration is the backpressure.
func (t *LinuxTun) SendReady(ctx context.Context) error {
	if t.isClosed() {
		return ErrClosed
	}
	return ctx.Err()
}

// Send implements connlib.Tun. Packets are grouped by FlowHash onto queues
// (order kept within a group, so within a flow) and each group is written
// with coalescing on its queue; with several non-empty groups the others are
// written in parallel by their queues' workers while Send writes the first,
// and Send waits for all. Packets that are not IPv4/IPv6, or that the kernel
// refuses, are dropped and counted in Stats().TxDropped.
//
// With offloads, wireguard-go writes the virtio-net header into the 10 bytes
// in front of offset and may append coalesced segments to bufs[i] beyond its
// length (within its capacity); give offset >= 10 and spare capacity (e.g.
// 64 KiB buffers, as wireguard-go's device does) for full-speed coalescing.
// A smaller offset works, one copied packet per write.
func (t *LinuxTun) Send(bufs [][]byte, offset int) (int, error) {
	if t.isClosed() {
		return 0, ErrClosed
	}
	if len(bufs) == 0 {
		return 0, nil
	}
	s := t.getScratch()
	defer t.putScratch(s)
	nq := len(t.queues)
	dropped := 0
	for _, b := range bufs {
		if offset < 0 || offset >= len(b) {
			dropped++
			continue
		}
		h, ok := FlowHash(b[offset:])
		if !ok {
			dropped++
			continue
		}
		q := 0
		if nq > 1 {
			q = queueFor(h, nq)
		}
		s.groups[q] = append(s.groups[q], b)
	}
	if dropped > 0 {
		t.stats.txDropped.Add(uint64(dropped))
	}
	first, pending, closed := -1, 0, false
	for qi, g := range s.groups {
		if len(g) == 0 {
			continue
		}
		if first < 0 {
			first = qi
			continue
		}
		select {
		case t.queues[qi].work <- writeJob{bufs: g, offset: offset, done: s.done}:
			pending++
		case <-t.closed:
			closed = true
		}
	}
	if first < 0 {
		return 0, nil
	}
	res := t.queues[first].write(s, s.groups[first], offset)
	res.closed = res.closed || closed
	for range pending {
		r := <-s.done
		res.accepted += r.accepted
		res.closed = res.closed || r.closed
	}
	if res.closed {
		return res.accepted, ErrClosed
	}
	return res.accepted, nil
}

// writeWorker writes the groups Send hands to this queue until Close.
func (q *linuxQueue) writeWorker() {
	defer q.t.readers.Done()
	for {
		select {
		case j := <-q.work:
			j.done <- q.write(nil, j.bufs, j.offset)
		case <-q.t.closed:
			// Send may still hand over a job it saw before Close; answer
			// it so that Send does not wait forever.
			for {
				select {
				case j := <-q.work:
					j.done <- writeResult{closed: true}
				default:
					return
				}
			}
		}
	}
}

// write writes one group on this queue and accounts for it. s (may be nil)
// supplies the bounce buffer for the small-offset path.
func (q *linuxQueue) write(s *sendScratch, bufs [][]byte, offset int) writeResult {
	t := q.t
	var bytes uint64
	for _, b := range bufs {
		bytes += uint64(len(b) - offset)
	}
	var failed int
	var closed bool
	switch {
	case t.offloads && offset < virtioNetHdrLen:
		failed, closed = q.writeBounced(s, bufs, offset)
	case t.noCoalesce.Load() && len(bufs) > 1:
		// One packet per Write: nothing to coalesce with, so every write
		// carries an all-zero (non-GSO) virtio header.
		for i := range bufs {
			_, err := q.dev.Write(bufs[i:i+1], offset)
			f, c := countWriteErrors(err, 1)
			failed += f
			if c {
				closed = true
				break
			}
		}
	default:
		_, err := q.dev.Write(bufs, offset)
		failed, closed = countWriteErrors(err, len(bufs))
		if t.offloads && failed > 0 && len(bufs) > 1 && errors.Is(err, unix.EINVAL) {
			// Send already dropped what is not IPv4/IPv6, which is what the
			// kernel answers EINVAL for on a plain write; on a batch that
			// could be coalesced it means the kernel refused a GSO write
			// (seen on buggy kernels, as Firezone notes). The packets are
			// lost (counted) and left for the endpoints to resend; later
			// writes go out uncoalesced.
			// Which packets were merged into the refused write is not
			// visible from here; count the batch as lost.
			failed = len(bufs)
			if t.noCoalesce.CompareAndSwap(false, true) {
				t.log.Warn("kernel refused a coalesced write; coalescing disabled for this device", zap.Error(err))
			}
		}
	}
	if closed || t.isClosed() {
		return writeResult{closed: true}
	}
	accepted := len(bufs) - failed
	t.stats.txPackets.Add(uint64(accepted))
	t.stats.txDropped.Add(uint64(failed))
	if failed == 0 {
		t.stats.txBytes.Add(bytes)
	}
	return writeResult{accepted: accepted}
}

// writeBounced writes packets one by one through a buffer with room for the
// virtio-net header, for callers that give no headroom.
func (q *linuxQueue) writeBounced(s *sendScratch, bufs [][]byte, offset int) (failed int, closed bool) {
	if s == nil {
		s = q.t.getScratch()
		defer q.t.putScratch(s)
	}
	if s.bounce == nil {
		s.bounce = make([]byte, virtioNetHdrLen+65535)
	}
	for _, b := range bufs {
		pkt := b[offset:]
		if len(pkt) > 65535 {
			failed++
			continue
		}
		n := copy(s.bounce[virtioNetHdrLen:], pkt)
		s.one[0] = s.bounce[:virtioNetHdrLen+n]
		_, err := q.dev.Write(s.one[:], virtioNetHdrLen)
		f, c := countWriteErrors(err, 1)
		if c {
			return failed, true
		}
		failed += f
	}
	s.one[0] = nil
	return failed, false
}

// countWriteErrors turns NativeTun.Write's joined per-write errors into a
// number of failed packets (at most n) and whether the device is closed.
func countWriteErrors(err error, n int) (failed int, closed bool) {
	if err == nil {
		return 0, false
	}
	if errors.Is(err, os.ErrClosed) || errors.Is(err, unix.EBADFD) {
		return n, true
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return min(len(j.Unwrap()), n), false
	}
	return min(1, n), false
}
