// Package connlib is gozone's platform-neutral tunnel library: the Tun
// abstraction, the Client and Gateway sessions and the packet pipeline that
// ties a Tun to WireGuard.
package connlib

import (
	"context"
	"os"
)

// ErrTunClosed is what connlib's own Tuns return from every method called
// after Close, and from calls that were blocked when Close happened. Any Tun
// may return its own error instead, as long as errors.Is(err, os.ErrClosed)
// holds for it (ErrTunClosed and the tun package's ErrClosed both match
// os.ErrClosed); callers test with errors.Is(err, os.ErrClosed).
var ErrTunClosed error = tunClosedError{}

type tunClosedError struct{}

func (tunClosedError) Error() string        { return "tun: device closed" }
func (tunClosedError) Is(target error) bool { return target == os.ErrClosed }

// MaxBatch is the largest batch a Tun hands out or accepts in one call. It
// equals wireguard-go's conn.IdealBatchSize.
const MaxBatch = 128

// Tun is a layer-3 packet device: a kernel TUN, a userspace network stack or
// an in-memory pair. Packets are raw IPv4 or IPv6 datagrams without any
// header in front.
//
// Every method is safe for concurrent use by multiple goroutines unless it
// says otherwise. Buffers are owned by the caller; a Tun never keeps a
// reference to a buffer after the call returns.
type Tun interface {
	// PollRecvMany blocks until at least one packet is available, ctx is
	// done or the device is closed, then reads up to len(bufs) packets:
	// packet i is written to bufs[i][offset:] and its length to sizes[i].
	// len(sizes) must be >= len(bufs). Each bufs[i][offset:] should have
	// room for MTU() bytes; a packet that does not fit is dropped and
	// counted, never truncated. It returns the number of packets read
	// (n >= 1 when err == nil).
	//
	// After Close it returns an error matching os.ErrClosed (see
	// ErrTunClosed); a call blocked in it when Close happens returns promptly. When ctx is done it returns
	// ctx.Err(). Concurrent callers each get distinct packets; callers that
	// need per-flow order must use a single reader.
	PollRecvMany(ctx context.Context, bufs [][]byte, sizes []int, offset int) (n int, err error)

	// SendReady blocks until a Send of up to BatchSize packets can be
	// accepted without being dropped for lack of room (backpressure), ctx
	// is done (ctx.Err()) or the device is closed (ErrTunClosed). A device
	// that never applies backpressure returns nil at once.
	SendReady(ctx context.Context) error

	// Send writes the packets bufs[i][offset:] to the device. Packets of
	// one flow (same 5-tuple, or same address pair for protocols without
	// ports) are delivered in the order they appear in bufs and, for one
	// caller, in the order of successive calls. It returns how many packets
	// were accepted; packets the device cannot take (malformed, full queue)
	// are dropped and counted, which is not an error. It never blocks for
	// long: call SendReady first to wait for room. After Close it returns
	// 0, ErrTunClosed. The caller may reuse bufs as soon as Send returns.
	// bufs[i] may be modified in place in front of offset (headroom for
	// offload headers) by the device.
	Send(bufs [][]byte, offset int) (int, error)

	// BatchSize is the largest number of packets PollRecvMany returns and
	// Send accepts per call; it is fixed for the device's lifetime and at
	// most MaxBatch.
	BatchSize() int

	// MTU is the largest IP packet, in bytes, the device carries.
	MTU() int

	// Name is the interface name (e.g. "tun-firezone") or a descriptive
	// name for devices without one.
	Name() string

	// Close releases the device and unblocks every pending call. It is
	// idempotent: calls after the first return nil.
	Close() error
}
