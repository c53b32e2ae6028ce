package connlib

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// Verdict is what a PacketHook decides for one packet.
type Verdict uint8

const (
	// Pass lets the packet continue on its way.
	Pass Verdict = iota
	// Drop discards the packet (the hook counts or answers it).
	Drop
)

// PacketHook inspects (and may rewrite in place, keeping its length) the
// packets crossing a Pipeline. It runs on the packet path: it must not block
// and should not allocate.
//
// FromTun sees every packet read from the Tun before WireGuard routes and
// encrypts it; ToTun sees every packet WireGuard decrypted before it is
// written to the Tun. FromTun is called from the single goroutine that
// reads the pipeline; ToTun may be called concurrently from several
// goroutines (one per WireGuard peer).
type PacketHook interface {
	FromTun(pkt []byte) Verdict
	ToTun(pkt []byte) Verdict
}

// PipelineStats counts the packets a Pipeline moved and dropped.
type PipelineStats struct {
	FromTun, FromTunDropped uint64
	ToTun, ToTunDropped     uint64
	Injected                uint64 // packets injected towards WireGuard
	InjectDropped           uint64 // injections refused because the queue was full
}

// pipelineInjectDepth bounds the packets waiting to be injected towards
// WireGuard (ICMP errors, flushed buffers, control messages).
const pipelineInjectDepth = 1024

// Pipeline is the wireguard-go tun.Device that connlib hands to snownet: it
// reads and writes a Tun without copying, runs a PacketHook on every packet
// in both directions and lets the session inject packets towards WireGuard
// (ICMP errors, packets buffered while a connection was being set up,
// in-tunnel control messages) or towards the Tun (local DNS answers).
type Pipeline struct {
	tun  Tun
	hook atomic.Pointer[hookBox]

	closeOnce sync.Once
	closed    atomic.Bool
	events    chan wgtun.Event

	// mu guards the injection queue and the read context that wakes a
	// blocked Read when something is injected.
	mu        sync.Mutex
	inject    [][]byte // packets waiting, oldest first
	spare     [][]byte // recycled injection buffers
	readCtx   context.Context
	readStop  context.CancelFunc
	closeCtx  context.Context
	closeStop context.CancelFunc

	scratch sync.Pool // *[][]byte for Write

	fromTun, fromTunDropped atomic.Uint64
	toTun, toTunDropped     atomic.Uint64
	injected, injectDropped atomic.Uint64
}

type hookBox struct{ h PacketHook }

var _ wgtun.Device = (*Pipeline)(nil)

// NewPipeline wraps t. A nil hook passes everything; SetHook changes it.
func NewPipeline(t Tun, hook PacketHook) *Pipeline {
	p := &Pipeline{tun: t, events: make(chan wgtun.Event, 1)}
	p.closeCtx, p.closeStop = context.WithCancel(context.Background())
	p.readCtx, p.readStop = context.WithCancel(p.closeCtx)
	p.events <- wgtun.EventUp
	p.SetHook(hook)
	p.scratch.New = func() any {
		s := make([][]byte, 0, MaxBatch)
		return &s
	}
	return p
}

// SetHook replaces the hook; safe to call at any time.
func (p *Pipeline) SetHook(h PacketHook) {
	if h == nil {
		p.hook.Store(nil)
		return
	}
	p.hook.Store(&hookBox{h})
}

// Tun returns the wrapped device.
func (p *Pipeline) Tun() Tun { return p.tun }

// Stats returns the counters.
func (p *Pipeline) Stats() PipelineStats {
	return PipelineStats{
		FromTun: p.fromTun.Load(), FromTunDropped: p.fromTunDropped.Load(),
		ToTun: p.toTun.Load(), ToTunDropped: p.toTunDropped.Load(),
		Injected: p.injected.Load(), InjectDropped: p.injectDropped.Load(),
	}
}

// InjectToPeer queues a copy of pkt to be handed to WireGuard as if it had
// been read from the Tun (it is routed by destination like any packet; the
// hook does not see it). It reports false when the queue is full or the
// pipeline closed. Safe for concurrent use.
func (p *Pipeline) InjectToPeer(pkt []byte) bool {
	if p.closed.Load() || len(pkt) == 0 || len(pkt) > p.tun.MTU() {
		p.injectDropped.Add(1)
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.inject) >= pipelineInjectDepth {
		p.injectDropped.Add(1)
		return false
	}
	var b []byte
	if n := len(p.spare); n > 0 {
		b = p.spare[n-1][:0]
		p.spare = p.spare[:n-1]
	}
	p.inject = append(p.inject, append(b, pkt...))
	p.injected.Add(1)
	p.readStop() // wake a Read blocked on the Tun
	return true
}

// InjectToTun writes pkts[i][offset:] to the Tun (local answers such as
// DNS responses or ICMP errors for the host). It waits for room like Write.
func (p *Pipeline) InjectToTun(ctx context.Context, pkts [][]byte, offset int) (int, error) {
	if err := p.tun.SendReady(ctx); err != nil {
		return 0, err
	}
	return p.tun.Send(pkts, offset)
}

// prepareRead returns the context a Read should block with, or ok=false
// when injected packets are already waiting.
func (p *Pipeline) prepareRead() (ctx context.Context, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.inject) > 0 {
		return nil, false
	}
	if p.readCtx.Err() != nil && p.closeCtx.Err() == nil {
		p.readCtx, p.readStop = context.WithCancel(p.closeCtx)
	}
	return p.readCtx, true
}

// drainInjected moves waiting injected packets into bufs.
func (p *Pipeline) drainInjected(bufs [][]byte, sizes []int, offset int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for n < len(bufs) && n < len(p.inject) {
		pkt := p.inject[n]
		if len(bufs[n])-offset < len(pkt) {
			sizes[n] = 0
		} else {
			sizes[n] = copy(bufs[n][offset:], pkt)
		}
		p.spare = append(p.spare, pkt)
		n++
	}
	rest := copy(p.inject, p.inject[n:])
	for i := rest; i < len(p.inject); i++ {
		p.inject[i] = nil
	}
	p.inject = p.inject[:rest]
	return n
}

// Read implements tun.Device for wireguard-go: injected packets first, then
// packets from the Tun through the hook. Dropped packets get size 0, which
// wireguard-go skips. It returns os.ErrClosed once the pipeline is closed
// and never returns a transient error (wireguard-go closes the device on
// any Read error).
func (p *Pipeline) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		if p.closed.Load() {
			return 0, os.ErrClosed
		}
		if n := p.drainInjected(bufs, sizes, offset); n > 0 {
			return n, nil
		}
		ctx, ok := p.prepareRead()
		if !ok {
			continue
		}
		n, err := p.tun.PollRecvMany(ctx, bufs, sizes, offset)
		if err != nil {
			if p.closed.Load() || errors.Is(err, os.ErrClosed) {
				return 0, os.ErrClosed
			}
			if errors.Is(err, context.Canceled) {
				continue // woken by an injection
			}
			// A device error that is not a close: do not hand it to
			// wireguard-go (it would close the device); retry.
			continue
		}
		p.fromTun.Add(uint64(n))
		if hb := p.hook.Load(); hb != nil {
			for i := 0; i < n; i++ {
				if sizes[i] > 0 && hb.h.FromTun(bufs[i][offset:offset+sizes[i]]) != Pass {
					sizes[i] = 0
					p.fromTunDropped.Add(1)
				}
			}
		}
		return n, nil
	}
}

// Write implements tun.Device for wireguard-go: every decrypted packet goes
// through the hook; the ones that pass are written to the Tun after waiting
// for room, so a slow Tun pushes back on WireGuard instead of dropping.
func (p *Pipeline) Write(bufs [][]byte, offset int) (int, error) {
	if p.closed.Load() {
		return 0, os.ErrClosed
	}
	p.toTun.Add(uint64(len(bufs)))
	out := bufs
	if hb := p.hook.Load(); hb != nil {
		sp := p.scratch.Get().(*[][]byte)
		defer func() {
			clear(*sp)
			*sp = (*sp)[:0]
			p.scratch.Put(sp)
		}()
		s := (*sp)[:0]
		for _, b := range bufs {
			if len(b) <= offset || hb.h.ToTun(b[offset:]) != Pass {
				p.toTunDropped.Add(1)
				continue
			}
			s = append(s, b)
		}
		*sp = s
		out = s
	}
	if len(out) == 0 {
		return len(bufs), nil
	}
	// wireguard-go hands over up to its own batch size; the Tun may take
	// fewer per call. Packets the Tun does not accept are dropped and
	// counted by the Tun.
	bs := p.tun.BatchSize()
	for len(out) > 0 {
		chunk := out[:min(len(out), bs)]
		if err := p.tun.SendReady(p.closeCtx); err != nil {
			return 0, os.ErrClosed
		}
		if _, err := p.tun.Send(chunk, offset); err != nil {
			if p.closed.Load() || errors.Is(err, os.ErrClosed) {
				return 0, os.ErrClosed
			}
			return 0, err
		}
		out = out[len(chunk):]
	}
	return len(bufs), nil
}

// File returns nil: a Pipeline has no file descriptor of its own.
func (p *Pipeline) File() *os.File { return nil }

// MTU returns the Tun's MTU.
func (p *Pipeline) MTU() (int, error) { return p.tun.MTU(), nil }

// Name returns the Tun's name.
func (p *Pipeline) Name() (string, error) { return p.tun.Name(), nil }

// Events yields EventUp once; a Tun has no up/down or MTU events.
func (p *Pipeline) Events() <-chan wgtun.Event { return p.events }

// BatchSize returns the Tun's batch size.
func (p *Pipeline) BatchSize() int { return p.tun.BatchSize() }

// Close closes the Tun and unblocks Read and Write. Idempotent.
func (p *Pipeline) Close() error {
	var err error
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		p.closeStop()
		err = p.tun.Close()
		close(p.events)
	})
	return err
}
