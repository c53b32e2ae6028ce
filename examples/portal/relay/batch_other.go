//go:build !linux

package relay

import (
	"errors"
	"net"
	"net/netip"
)

// Portable fallback of batch_linux.go: one datagram per system call.

type sock struct {
	conn *net.UDPConn
}

func newSock(c *net.UDPConn) (*sock, error) { return &sock{conn: c}, nil }

func (s *sock) setBuffers(n int) {
	_ = s.conn.SetReadBuffer(n)
	_ = s.conn.SetWriteBuffer(n)
}

type batchReader struct{ s *sock }

func newBatchReader(s *sock, size int) *batchReader { return &batchReader{s: s} }

func (s *sock) enableGRO() bool { return false }

func (r *batchReader) read(bufs [][]byte, sizes, gso []int, from []netip.AddrPort) (int, error) {
	n, ap, err := r.s.conn.ReadFromUDPAddrPort(bufs[0])
	if err != nil {
		return 0, err
	}
	sizes[0], gso[0], from[0] = n, 0, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	return 1, nil
}

type batchWriter struct {
	s       *sock
	bufs    [][]byte
	to      []netip.AddrPort
	dropped uint64
	noGSO   bool
}

func newBatchWriter(size int) *batchWriter {
	return &batchWriter{bufs: make([][]byte, 0, size), to: make([]netip.AddrPort, 0, size)}
}

func (w *batchWriter) begin(s *sock) {
	if w.s != s {
		w.flush()
		w.s = s
	}
}

func (w *batchWriter) add(b []byte, to netip.AddrPort, seg int) {
	if seg > 0 && seg < len(b) {
		for len(b) > 0 {
			k := min(seg, len(b))
			w.add(b[:k], to, 0)
			b = b[k:]
		}
		return
	}
	if len(w.bufs) == cap(w.bufs) {
		w.flush()
	}
	w.bufs = append(w.bufs, b)
	w.to = append(w.to, to)
}

func (w *batchWriter) flush() {
	for i, b := range w.bufs {
		if _, err := w.s.conn.WriteToUDPAddrPort(b, w.to[i]); err != nil {
			w.dropped++
		}
	}
	w.bufs, w.to = w.bufs[:0], w.to[:0]
}

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }
