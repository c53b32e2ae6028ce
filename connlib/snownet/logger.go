package snownet

import (
	"fmt"

	"github.com/pion/logging"
	"go.uber.org/zap"
)

// pionLoggerFactory adapts zap to pion's logging. pion logs many harmless
// warnings on normal operation (see snownet-notes §3), so everything below
// Error goes to Debug and Error to Info.
type pionLoggerFactory struct{ log *zap.Logger }

func (f pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.log.Named(scope).Sugar()}
}

type pionLogger struct{ s *zap.SugaredLogger }

func (l pionLogger) Trace(msg string)                          {}
func (l pionLogger) Tracef(format string, args ...interface{}) {}
func (l pionLogger) Debug(msg string)                          { l.s.Debug(msg) }
func (l pionLogger) Debugf(format string, args ...interface{}) { l.s.Debugf(format, args...) }
func (l pionLogger) Info(msg string)                           { l.s.Debug(msg) }
func (l pionLogger) Infof(format string, args ...interface{})  { l.s.Debugf(format, args...) }
func (l pionLogger) Warn(msg string)                           { l.s.Debug(msg) }
func (l pionLogger) Warnf(format string, args ...interface{})  { l.s.Debugf(format, args...) }
func (l pionLogger) Error(msg string)                          { l.s.Info(msg) }
func (l pionLogger) Errorf(format string, args ...interface{}) {
	l.s.Info(fmt.Sprintf(format, args...))
}

// wgLogger returns wireguard-go loggers writing to zap at Debug.
func wgLogf(log *zap.Logger, prefix string) func(string, ...any) {
	s := log.Sugar()
	return func(format string, args ...any) { s.Debugf(prefix+format, args...) }
}
