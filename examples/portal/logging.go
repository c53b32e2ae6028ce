package devportal

import (
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// logGate stops all logging through a logger once the portal is closed:
// socket goroutines of the phoenix servers may still be ending after Close
// returns, and must not write to a logger whose owner (e.g. a finished
// test) is gone. Writes hold the read lock, so once close returns no write
// is in progress.
type logGate struct {
	mu     sync.RWMutex
	closed bool
}

func (g *logGate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// gated wraps log so that its output stops at g.close().
func gated(log *zap.Logger, g *logGate) *zap.Logger {
	return log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return gatedCore{c, g} }))
}

type gatedCore struct {
	zapcore.Core
	g *logGate
}

func (c gatedCore) With(f []zapcore.Field) zapcore.Core { return gatedCore{c.Core.With(f), c.g} }

func (c gatedCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c gatedCore) Write(e zapcore.Entry, f []zapcore.Field) error {
	c.g.mu.RLock()
	defer c.g.mu.RUnlock()
	if c.g.closed {
		return nil
	}
	return c.Core.Write(e, f)
}
