package cli

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"syscall"

	"go.uber.org/zap"
)

// CPU profiling is a debugging aid for the binaries (examples/bench uses it
// to show where a path spends its CPU): GOZONE_CPU_PROFILE=FILE writes a
// pprof CPU profile to FILE, read with `go tool pprof BINARY FILE`.
const (
	// EnvCPUProfile names the profile file; unset or empty: no profiling.
	EnvCPUProfile = "GOZONE_CPU_PROFILE"
	// EnvCPUProfileSIGUSR2, when true, delays profiling to the first
	// SIGUSR2 and ends it at the second (or at exit), so a profile can
	// cover just the interesting part of a run.
	EnvCPUProfileSIGUSR2 = "GOZONE_CPU_PROFILE_SIGUSR2"
)

// CPUProfileHelp is the one paragraph the binaries' --help prints about it.
const CPUProfileHelp = `Debugging: GOZONE_CPU_PROFILE=FILE writes a pprof CPU profile of the whole run to FILE
(flushed on exit, including after SIGINT/SIGTERM); with GOZONE_CPU_PROFILE_SIGUSR2=true
profiling starts at the first SIGUSR2 and stops at the second (or at exit).`

// profState is where a CPUProfile is in its life.
type profState int

const (
	profWaiting profState = iota // file created, waiting for SIGUSR2
	profRunning                  // pprof is sampling into the file
	profDone                     // stopped, file flushed and closed
)

// CPUProfile is a running (or, in SIGUSR2 mode, pending) pprof CPU
// profile. Go allows one CPU profile per process, so there is at most one
// CPUProfile at a time. Stop may be called from any goroutine, any number
// of times, also on a nil *CPUProfile; the SIGUSR2 handler runs on its own
// goroutine until Stop.
type CPUProfile struct {
	log  *zap.Logger
	path string

	mu    sync.Mutex // guards f and state; held while pprof starts or stops
	f     *os.File
	state profState

	sig      chan os.Signal // nil unless SIGUSR2 mode
	quit     chan struct{}
	loopDone chan struct{}
	stopOnce sync.Once
	stopErr  error
}

// StartCPUProfileFromEnv starts the profile $GOZONE_CPU_PROFILE asks for,
// or returns (nil, nil) when it is unset. The caller defers Stop on every
// exit path (the binaries' orderly SIGINT/SIGTERM shutdown included): the
// profile is only complete once Stop has returned.
func StartCPUProfileFromEnv(log *zap.Logger) (*CPUProfile, error) {
	path := EnvString(EnvCPUProfile, "")
	if path == "" {
		return nil, nil
	}
	onSignal, err := EnvBool(EnvCPUProfileSIGUSR2, false)
	if err != nil {
		return nil, err
	}
	return StartCPUProfile(path, onSignal, log)
}

// StartCPUProfile creates (truncates) path at once, so a bad path is an
// error at start-up, and starts profiling into it, or with onSignal waits
// for SIGUSR2 to start.
func StartCPUProfile(path string, onSignal bool, log *zap.Logger) (*CPUProfile, error) {
	if log == nil {
		log = zap.NewNop()
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot create the CPU profile: %w", EnvCPUProfile, err)
	}
	p := &CPUProfile{log: log, path: path, f: f}
	if !onSignal {
		if err := p.startLocked(); err != nil {
			f.Close()
			return nil, err
		}
		log.Info("CPU profiling until exit", zap.String("file", path))
		return p, nil
	}
	p.sig, p.quit, p.loopDone = make(chan os.Signal, 1), make(chan struct{}), make(chan struct{})
	signal.Notify(p.sig, syscall.SIGUSR2)
	go p.loop()
	log.Info("CPU profiling from the first SIGUSR2 to the second (or exit)", zap.String("file", path))
	return p, nil
}

// startLocked starts pprof; p.mu is held or p is not shared yet.
func (p *CPUProfile) startLocked() error {
	if err := pprof.StartCPUProfile(p.f); err != nil {
		return fmt.Errorf("%s: %w", EnvCPUProfile, err)
	}
	p.state = profRunning
	return nil
}

// finishLocked stops pprof if it runs and closes the file; p.mu is held.
func (p *CPUProfile) finishLocked() error {
	var err error
	switch p.state {
	case profDone:
		return nil
	case profWaiting:
		// No SIGUSR2 came: write an empty but valid profile rather than a
		// zero-byte file pprof cannot read.
		p.log.Warn("CPU profile stopped before any SIGUSR2: it is empty", zap.String("file", p.path))
		err = pprof.StartCPUProfile(p.f)
		if err == nil {
			pprof.StopCPUProfile()
		}
	case profRunning:
		pprof.StopCPUProfile()
	}
	p.state = profDone
	return errors.Join(err, p.f.Close())
}

// loop handles SIGUSR2: the first starts profiling, the second writes the
// profile, later ones are ignored.
func (p *CPUProfile) loop() {
	defer close(p.loopDone)
	for {
		select {
		case <-p.quit:
			return
		case <-p.sig:
		}
		p.mu.Lock()
		switch p.state {
		case profWaiting:
			if err := p.startLocked(); err != nil {
				p.log.Error("CPU profiling did not start", zap.Error(err))
			} else {
				p.log.Info("CPU profiling started (SIGUSR2)", zap.String("file", p.path))
			}
		case profRunning:
			if err := p.finishLocked(); err != nil {
				p.log.Error("writing the CPU profile", zap.String("file", p.path), zap.Error(err))
			} else {
				p.log.Info("CPU profile written (SIGUSR2)", zap.String("file", p.path))
			}
		default:
			p.log.Info("SIGUSR2 ignored: the CPU profile is already written", zap.String("file", p.path))
		}
		p.mu.Unlock()
	}
}

// Stop ends profiling and flushes and closes the file. It returns the
// first call's error on every call; a nil p does nothing.
func (p *CPUProfile) Stop() error {
	if p == nil {
		return nil
	}
	p.stopOnce.Do(func() {
		if p.sig != nil {
			signal.Stop(p.sig)
			close(p.quit)
			<-p.loopDone
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		wasRunning := p.state == profRunning
		p.stopErr = p.finishLocked()
		if p.stopErr != nil {
			p.log.Error("writing the CPU profile", zap.String("file", p.path), zap.Error(p.stopErr))
		} else if wasRunning {
			p.log.Info("CPU profile written", zap.String("file", p.path))
		}
	})
	return p.stopErr
}

// running reports whether pprof is sampling (for tests).
func (p *CPUProfile) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state == profRunning
}
