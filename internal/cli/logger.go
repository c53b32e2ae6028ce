package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Log formats accepted by NewLogger (reference §6.1 --log-format).
const (
	LogFormatHuman = "human"
	LogFormatJSON  = "json"
)

// ParseLevel reads a log level. It accepts zap's names and the RUST_LOG
// style Firezone's binaries document ("info", "debug,snownet=trace"): the
// first directive without "=" is the level; per-module directives are
// ignored. Empty means info.
func ParseLevel(s string) (zapcore.Level, error) {
	level := "info"
	for _, d := range strings.Split(s, ",") {
		d = strings.TrimSpace(d)
		if d != "" && !strings.Contains(d, "=") {
			level = d
			break
		}
	}
	if level == "trace" {
		level = "debug"
	}
	var l zapcore.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return l, fmt.Errorf("log level %q: %w", level, err)
	}
	return l, nil
}

// NewLogger builds the binaries' logger writing to w (nil: stderr) in
// format human (console encoder, ISO-8601 times) or json.
func NewLogger(format, level string, w io.Writer) (*zap.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	if w == nil {
		w = os.Stderr
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch format {
	case "", LogFormatHuman:
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	case LogFormatJSON:
		enc = zapcore.NewJSONEncoder(ec)
	default:
		return nil, fmt.Errorf("log format %q: must be %q or %q", format, LogFormatHuman, LogFormatJSON)
	}
	core := zapcore.NewCore(enc, zapcore.AddSync(w), lvl)
	return zap.New(core), nil
}
