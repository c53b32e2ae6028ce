package relay

import (
	"fmt"

	"github.com/pion/logging"
	"go.uber.org/zap"
)

// zapFactory adapts zap to pion's logging.LoggerFactory. pion's debug and
// trace output is very chatty, so it is mapped to zap's debug level.
type zapFactory struct{ log *zap.Logger }

var _ logging.LoggerFactory = zapFactory{}

func (f zapFactory) NewLogger(scope string) logging.LeveledLogger {
	return zapLeveled{f.log.Named(scope).Sugar()}
}

type zapLeveled struct{ s *zap.SugaredLogger }

var _ logging.LeveledLogger = zapLeveled{}

func (l zapLeveled) Trace(msg string)                  { l.s.Debug(msg) }
func (l zapLeveled) Tracef(format string, args ...any) { l.s.Debug(fmt.Sprintf(format, args...)) }
func (l zapLeveled) Debug(msg string)                  { l.s.Debug(msg) }
func (l zapLeveled) Debugf(format string, args ...any) { l.s.Debugf(format, args...) }
func (l zapLeveled) Info(msg string)                   { l.s.Info(msg) }
func (l zapLeveled) Infof(format string, args ...any)  { l.s.Infof(format, args...) }
func (l zapLeveled) Warn(msg string)                   { l.s.Warn(msg) }
func (l zapLeveled) Warnf(format string, args ...any)  { l.s.Warnf(format, args...) }
func (l zapLeveled) Error(msg string)                  { l.s.Error(msg) }
func (l zapLeveled) Errorf(format string, args ...any) { l.s.Errorf(format, args...) }
