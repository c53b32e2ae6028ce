package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gozone/gozone/internal/testproc"
	"github.com/gozone/gozone/internal/topo"
)

// The transfer protocol: the client sends a 24-byte request (size, seed,
// rate in bytes per second, 0 = unpaced, all big-endian uint64) and the
// server answers with size bytes of ChaCha8(seed) output, then closes.
// Both ends derive the same bytes, so the client checks the SHA-256 of
// what arrived against the hash of what should have.

const chunk = 32 << 10

// pseudoRandom writes n bytes of the seed's stream to w, paced to rate
// bytes per second (0: as fast as w takes them).
func pseudoRandom(w io.Writer, n, seed, rate uint64) error {
	var key [32]byte
	binary.BigEndian.PutUint64(key[:], seed)
	src := rand.NewChaCha8(key)
	buf := make([]byte, chunk)
	start := time.Now()
	var sent uint64
	for sent < n {
		k := min(uint64(len(buf)), n-sent)
		_, _ = src.Read(buf[:k])
		if _, err := w.Write(buf[:k]); err != nil {
			return err
		}
		sent += k
		if rate > 0 {
			due := start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
	}
	return nil
}

// expectedHash is the SHA-256 of n bytes of the seed's stream.
func expectedHash(n, seed uint64) [32]byte {
	h := sha256.New()
	_ = pseudoRandom(h, n, seed, 0)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// serveData runs the transfer server on ap inside h until cleanup.
func serveData(t *testing.T, h *topo.Host, ap netip.AddrPort) {
	t.Helper()
	testproc.ServeTCP(t, h, ap, func(c net.Conn) {
		// Bounded: no transfer of these tests lasts this long.
		_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
		var req [24]byte
		if _, err := io.ReadFull(c, req[:]); err != nil {
			return
		}
		_ = pseudoRandom(c, binary.BigEndian.Uint64(req[0:]), binary.BigEndian.Uint64(req[8:]), binary.BigEndian.Uint64(req[16:]))
	})
}

// transfer is one download from the transfer server, run by fetch.
type transfer struct {
	size, seed, rate uint64
	// stall fails the transfer when no byte arrives for this long.
	stall time.Duration
	// total bounds the whole transfer, dial attempts included.
	total time.Duration
	// dial bounds one connection attempt (default 20 s); attempts repeat
	// until total runs out.
	dial time.Duration
	// got counts the bytes received so far (read it while it runs).
	got atomic.Uint64
	// maxGap is the longest time without a byte arriving (valid after
	// fetch returned): how long a fault stalled the transfer.
	maxGap time.Duration
}

// errMismatch says the bytes that arrived are not the ones sent.
var errMismatch = errors.New("transfer: hash mismatch")

// fetch dials the transfer server from inside h (retrying while the
// tunnel is being set up), downloads x.size bytes and checks their hash.
func fetch(h *topo.Host, ap netip.AddrPort, x *transfer) error {
	if x.stall == 0 {
		x.stall = 45 * time.Second
	}
	if x.total == 0 {
		x.total = 4 * time.Minute
	}
	want := expectedHash(x.size, x.seed)
	deadline := time.Now().Add(x.total)
	if x.dial == 0 {
		x.dial = 20 * time.Second
	}
	var c net.Conn
	var err error
	for {
		if c, err = h.DialTCP(ap, min(x.dial, time.Until(deadline))); err == nil {
			break
		}
		if time.Until(deadline) < 100*time.Millisecond {
			return fmt.Errorf("dial %v: %w", ap, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer c.Close()
	var req [24]byte
	binary.BigEndian.PutUint64(req[0:], x.size)
	binary.BigEndian.PutUint64(req[8:], x.seed)
	binary.BigEndian.PutUint64(req[16:], x.rate)
	_ = c.SetWriteDeadline(deadline)
	if _, err := c.Write(req[:]); err != nil {
		return fmt.Errorf("request: %w", err)
	}
	hash := sha256.New()
	buf := make([]byte, 64<<10)
	last := time.Now()
	for {
		rd := time.Now().Add(x.stall)
		if rd.After(deadline) {
			rd = deadline
		}
		_ = c.SetReadDeadline(rd)
		n, err := c.Read(buf)
		if n > 0 {
			now := time.Now()
			x.maxGap = max(x.maxGap, now.Sub(last))
			last = now
		}
		hash.Write(buf[:n])
		x.got.Add(uint64(n))
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("after %d of %d bytes: %w", x.got.Load(), x.size, err)
		}
	}
	if got := x.got.Load(); got != x.size {
		return fmt.Errorf("transfer: %d bytes, want %d", got, x.size)
	}
	if !bytes.Equal(hash.Sum(nil), want[:]) {
		return errMismatch
	}
	return nil
}

// fetchAsync runs fetch in the background; the result arrives on the
// channel.
func fetchAsync(h *topo.Host, ap netip.AddrPort, x *transfer) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- fetch(h, ap, x) }()
	return ch
}

// done waits for a fetchAsync result, failing the test on error.
func done(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(5 * time.Minute):
		t.Fatalf("%s: did not finish", what)
	}
}
