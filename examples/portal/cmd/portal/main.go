// Command portal runs gozone's development portal: the Firezone portal
// protocol for gateways (/gateway/v2) and clients (/client/v2) with a
// built-in TURN relay, configured from one YAML/JSON file (see
// examples/portal/portal.example.yaml).
//
//	portal --config portal.yaml [--listen 127.0.0.1:8080] [--relay-listen :3478] [--log-format human|json]
//
// SIGHUP reloads the configuration and pushes the changes to connected
// devices; an invalid file is logged and the running configuration kept.
// SIGINT/SIGTERM stop the portal (exit 0). Startup errors exit 1, usage
// errors 2.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	devportal "github.com/gozone/gozone/examples/portal"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	os.Exit(run(os.Args[1:], os.Stderr, sigs, nil))
}

// run is main without the process: ready, if non-nil, receives the portal
// once it listens (for tests).
func run(args []string, stderr io.Writer, sigs <-chan os.Signal, ready chan<- *devportal.Portal) int {
	fs := flag.NewFlagSet("portal", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "configuration file (YAML or JSON), required")
	listen := fs.String("listen", "127.0.0.1:8080", "HTTP/WebSocket listen address")
	relayListen := fs.String("relay-listen", ":3478", "built-in TURN relay UDP listen address")
	logFormat := fs.String("log-format", "human", "log format: human or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *configPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: portal --config FILE [--listen ADDR] [--relay-listen ADDR] [--log-format human|json]")
		return 2
	}
	log, err := newLogger(*logFormat, *logLevel, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "portal:", err)
		return 2
	}
	defer log.Sync() //nolint:errcheck

	p, err := devportal.New(devportal.Options{ConfigPath: *configPath, RelayListen: *relayListen, Logger: log})
	if err != nil {
		log.Error("cannot start", zap.Error(err))
		return 1
	}
	defer p.Close()
	if _, err := p.Listen(*listen); err != nil {
		log.Error("cannot listen", zap.Error(err))
		return 1
	}
	if ready != nil {
		ready <- p
	}
	for sig := range sigs {
		switch sig {
		case syscall.SIGHUP:
			log.Info("SIGHUP: reloading configuration", zap.String("config", *configPath))
			_ = p.Reload() // logged by Reload; the running config stays on error
		default:
			log.Info("stopping", zap.Stringer("signal", sig))
			return 0
		}
	}
	return 0
}

func newLogger(format, level string, w io.Writer) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	var enc zapcore.Encoder
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	case "human":
		c := zap.NewDevelopmentEncoderConfig()
		c.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewConsoleEncoder(c)
	default:
		return nil, errors.New("--log-format must be human or json")
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), lvl)), nil
}
