package connlib

import (
	"context"
	"errors"
	"os"
	"sync"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// wgDevice adapts a Tun to wireguard-go's tun.Device without copying:
// buffers, sizes and offsets pass straight through, so the device's reader
// gets packets at its offset (MessageTransportHeaderSize, 16) and can write
// the WireGuard header in place in front of them.
//
// Concurrency: wireguard-go calls Read from its single TUN reader goroutine
// and Write from every peer's receive goroutine at once; both are safe
// because the Tun's methods are. Close may race with both; it cancels the
// context every blocked Read and Write waits on, then closes the Tun.
type wgDevice struct {
	tun    Tun
	events chan wgtun.Event

	ctx    context.Context // done once Close was called
	cancel context.CancelFunc

	closeOnce sync.Once
}

var _ wgtun.Device = (*wgDevice)(nil)

// NewWireGuardDevice returns a wireguard-go tun.Device backed by t, for
// device.NewDevice. It reports EventUp once, so the device comes up when
// the adapter is attached. Read blocks in t.PollRecvMany; Write waits for
// t.SendReady and then calls t.Send, so WireGuard's receive path is slowed
// by a full Tun instead of dropping. Closing the adapter closes t. After
// Close, Read and Write return an error matching os.ErrClosed, on which
// wireguard-go's TUN reader exits without logging an error.
func NewWireGuardDevice(t Tun) wgtun.Device {
	ctx, cancel := context.WithCancel(context.Background())
	d := &wgDevice{
		tun:    t,
		events: make(chan wgtun.Event, 1),
		ctx:    ctx,
		cancel: cancel,
	}
	d.events <- wgtun.EventUp
	return d
}

// closedErr maps the ways a Tun reports "closed" (and our own cancelled
// context) to os.ErrClosed, which is what wireguard-go expects; other
// errors pass through.
func (d *wgDevice) closedErr(err error) error {
	if d.ctx.Err() != nil || errors.Is(err, ErrTunClosed) || errors.Is(err, os.ErrClosed) {
		return os.ErrClosed
	}
	return err
}

// File implements tun.Device; there is no file descriptor.
func (d *wgDevice) File() *os.File { return nil }

// Read implements tun.Device by PollRecvMany with the same buffers.
func (d *wgDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := d.tun.PollRecvMany(d.ctx, bufs, sizes, offset)
	if err != nil {
		return 0, d.closedErr(err)
	}
	return n, nil
}

// Write implements tun.Device: for each chunk of at most BatchSize packets
// it waits for room (SendReady) and sends. It returns how many packets the
// Tun accepted; packets the Tun drops (malformed, oversize) are its to
// count and not an error.
func (d *wgDevice) Write(bufs [][]byte, offset int) (int, error) {
	bs := d.tun.BatchSize()
	written := 0
	for len(bufs) > 0 {
		chunk := bufs[:min(len(bufs), bs)]
		if err := d.tun.SendReady(d.ctx); err != nil {
			return written, d.closedErr(err)
		}
		n, err := d.tun.Send(chunk, offset)
		written += n
		if err != nil {
			return written, d.closedErr(err)
		}
		bufs = bufs[len(chunk):]
	}
	return written, nil
}

// MTU implements tun.Device.
func (d *wgDevice) MTU() (int, error) { return d.tun.MTU(), nil }

// Name implements tun.Device.
func (d *wgDevice) Name() (string, error) { return d.tun.Name(), nil }

// Events implements tun.Device. The channel carries one EventUp and is
// closed by Close, which ends wireguard-go's event goroutine.
func (d *wgDevice) Events() <-chan wgtun.Event { return d.events }

// BatchSize implements tun.Device.
func (d *wgDevice) BatchSize() int { return d.tun.BatchSize() }

// Close implements tun.Device: it unblocks Read and Write, closes the Tun
// and the Events channel. It returns the Tun's Close error; later calls
// return nil.
func (d *wgDevice) Close() error {
	var err error
	d.closeOnce.Do(func() {
		d.cancel()
		err = d.tun.Close()
		close(d.events)
	})
	return err
}
