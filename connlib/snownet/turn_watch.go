package snownet

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// A relay that restarts forgets our allocation, and a restarted pion/turn
// server does not even answer requests for it, so the allocation's own
// maintenance (a check after 25 s of silence) notices late, and the first
// new agent after the restart had to wait for a failed verification
// (turnVerifyTimeout) before the allocation was re-created. The watchdog
// notices sooner from the data path: a relayed pair always hears from the
// relay (ICE answers its keepalives every 2 s through it), so when we keep
// sending through the relay but nothing came back for silentAfter, the
// allocation is checked at once and re-created if it is gone; the
// connections whose pair sent from the old relayed address then fail at
// once (relayloss.go) instead of after ICE's timeouts, and their
// replacements gather the fresh allocation.

// turnWatchConfig tunes the watchdog; zero fields take the defaults.
type turnWatchConfig struct {
	tick        time.Duration // how often the counters are compared (1 s)
	silentAfter time.Duration // silence from the relay that triggers a check (3 s)
	backoff     time.Duration // after a check that found the allocation alive (15 s)
}

const (
	turnWatchTick    = time.Second
	turnWatchSilence = 3 * time.Second
	turnWatchBackoff = 15 * time.Second
)

// watchdog runs until ctx ends (started with the allocation's maintenance).
func (p *turnProxy) watchdog(ctx context.Context) {
	cfg := p.watch
	if cfg.tick <= 0 {
		cfg.tick = turnWatchTick
	}
	if cfg.silentAfter <= 0 {
		cfg.silentAfter = turnWatchSilence
	}
	if cfg.backoff <= 0 {
		cfg.backoff = turnWatchBackoff
	}
	t := time.NewTicker(cfg.tick)
	defer t.Stop()
	now := time.Now()
	rxSeen, txSeen := p.rx.Load(), p.tx.Load()
	rxAt, txAt := now, now
	var notBefore time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now = <-t.C:
		}
		if rx := p.rx.Load(); rx != rxSeen {
			rxSeen, rxAt = rx, now
		}
		if tx := p.tx.Load(); tx != txSeen {
			txSeen, txAt = tx, now
		}
		if !txAt.After(rxAt) || now.Sub(rxAt) < cfg.silentAfter || now.Before(notBefore) {
			continue
		}
		if !p.alloc.relayedAddr().IsValid() {
			continue
		}
		alive, err := p.verify(ctx)
		if err != nil {
			p.log.Debug("turn watchdog: re-allocation failed", zap.Stringer("relay", p.server()), zap.Error(err))
		}
		if alive {
			// The relay is there; the silence is the peer's. Check again
			// only after a while.
			notBefore = now.Add(cfg.backoff)
		}
		rxAt = time.Now()
	}
}

// verify refreshes the allocation (one short try) and re-creates it if the
// relay lost it. It reports whether the old allocation was alive.
func (p *turnProxy) verify(ctx context.Context) (alive bool, err error) {
	p.allocMu.Lock()
	defer p.allocMu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, turnVerifyTimeout)
	err = p.alloc.refresh(rctx, p.alloc.allocationLifetime())
	cancel()
	if err == nil {
		return true, nil
	}
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	p.log.Info("turn relay is silent and lost our allocation; re-allocating", zap.Stringer("relay", p.server()), zap.Error(err))
	return false, p.alloc.reallocate(ctx)
}
