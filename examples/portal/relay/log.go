package relay

import (
	"fmt"
	"sync"

	"github.com/pion/logging"
	"go.uber.org/zap"
)

// logGate silences pion's loggers once the relay is closed: pion's read
// loops outlive turn.Server.Close and would otherwise log into a logger
// whose owner (e.g. a finished test) is gone. Writes hold the read lock,
// so after close() returns no write is in progress or will happen.
type logGate struct {
	mu     sync.RWMutex
	closed bool
}

func (g *logGate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

func (g *logGate) do(f func()) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if !g.closed {
		f()
	}
}

// zapFactory adapts zap to pion's logging.LoggerFactory. pion's debug and
// trace output is very chatty, so both go to zap's debug level.
type zapFactory struct {
	log  *zap.Logger
	gate *logGate
}

var _ logging.LoggerFactory = zapFactory{}

func (f zapFactory) NewLogger(scope string) logging.LeveledLogger {
	return zapLeveled{f.log.Named(scope).Sugar(), f.gate}
}

type zapLeveled struct {
	s    *zap.SugaredLogger
	gate *logGate
}

var _ logging.LeveledLogger = zapLeveled{}

func (l zapLeveled) Trace(msg string) { l.gate.do(func() { l.s.Debug(msg) }) }
func (l zapLeveled) Tracef(format string, args ...any) {
	l.gate.do(func() { l.s.Debug(fmt.Sprintf(format, args...)) })
}
func (l zapLeveled) Debug(msg string) { l.gate.do(func() { l.s.Debug(msg) }) }
func (l zapLeveled) Debugf(format string, args ...any) {
	l.gate.do(func() { l.s.Debugf(format, args...) })
}
func (l zapLeveled) Info(msg string) { l.gate.do(func() { l.s.Info(msg) }) }
func (l zapLeveled) Infof(format string, args ...any) {
	l.gate.do(func() { l.s.Infof(format, args...) })
}
func (l zapLeveled) Warn(msg string) { l.gate.do(func() { l.s.Warn(msg) }) }
func (l zapLeveled) Warnf(format string, args ...any) {
	l.gate.do(func() { l.s.Warnf(format, args...) })
}
func (l zapLeveled) Error(msg string) { l.gate.do(func() { l.s.Error(msg) }) }
func (l zapLeveled) Errorf(format string, args ...any) {
	l.gate.do(func() { l.s.Errorf(format, args...) })
}
