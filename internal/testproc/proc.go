package testproc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Starter starts a command somewhere, e.g. inside a network namespace:
// *netns.NS is one. Start must not wait for the command.
type Starter interface {
	Start(cmd *exec.Cmd) error
}

// TailLines is how much of a process's log Start's cleanup prints when the
// test failed.
const TailLines = 80

// DefaultStopGrace is how long Stop waits after SIGTERM before SIGKILL.
const DefaultStopGrace = 5 * time.Second

// Proc is a child process started by Start, its output captured in Log.
// Its methods are safe for concurrent use; those taking a testing.TB call
// its Fatal and so belong on the test's goroutine.
type Proc struct {
	// Name names the process in failure messages ("gateway", "portal#2").
	Name string
	// Cmd is the command; do not call its Wait (use Done, ExitCode, Stop).
	Cmd *exec.Cmd
	// Log holds what the process wrote to stdout and stderr.
	Log *LogBuffer
	// StopGrace is how long Stop waits between SIGTERM and SIGKILL
	// (DefaultStopGrace); set it before calling Stop.
	StopGrace time.Duration

	done chan struct{}
	err  error // the exit error; set before done is closed
}

// Start starts cmd with its stdout and stderr going to a new LogBuffer,
// in the test's own namespace when in is nil, else through in.Start. It
// registers a cleanup that stops the process (Stop) and then, if the test
// failed, prints the last TailLines lines of its log. Register it after
// the cleanups of the namespace it runs in (create the namespace first),
// so that it stops before the namespace goes. Start fails the test if the
// command does not start.
func Start(t testing.TB, in Starter, name string, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{Name: name, Cmd: cmd, Log: &LogBuffer{}, StopGrace: DefaultStopGrace, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Log, p.Log
	var err error
	if in == nil {
		err = cmd.Start()
	} else {
		err = in.Start(cmd)
	}
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.Stop()
		if t.Failed() {
			t.Logf("%s log:\n%s", name, p.Log.Tail(TailLines))
		}
	})
	return p
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and if so its exit error
// (nil for exit status 0).
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop ends the process (SIGTERM, SIGKILL after StopGrace), waits for it
// and returns its exit error. Calling it again, or after the process
// exited on its own, just returns that error.
func (p *Proc) Stop() error {
	if exited, err := p.Exited(); exited {
		return err
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	grace := time.NewTimer(p.StopGrace)
	defer grace.Stop()
	select {
	case <-p.done:
	case <-grace.C:
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
	return p.err
}

// Signal sends sig to the process, failing the test if that fails.
func (p *Proc) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", p.Name, err)
	}
}

// Kill ends the process at once (SIGKILL: a crash, no goodbye) and waits
// up to Timeout for it to go.
func (p *Proc) Kill(t testing.TB) {
	t.Helper()
	_ = p.Cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(Timeout):
		t.Fatalf("%s did not die", p.Name)
	}
}

// ExitCode waits up to timeout for the process to exit and returns its
// exit status (-1 if a signal ended it). It fails the test if the process
// is still running then, or if waiting failed for another reason.
func (p *Proc) ExitCode(t testing.TB, timeout time.Duration) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	select {
	case <-p.done:
	case <-ctx.Done():
		t.Fatalf("%s did not exit within %v", p.Name, timeout)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("%s: %v", p.Name, p.err)
	}
	return 0
}

// Running fails the test if the process has exited.
func (p *Proc) Running(t testing.TB) {
	t.Helper()
	if exited, err := p.Exited(); exited {
		t.Fatalf("%s exited: %v", p.Name, err)
	}
}

// Mark is the current length of the log, for WaitLogSince.
func (p *Proc) Mark() int { return p.Log.Len() }

// WaitLog waits up to Timeout for a log line containing every one of
// parts and returns it. It fails the test when none comes, at once if the
// process exits without writing one.
func (p *Proc) WaitLog(t testing.TB, parts ...string) string {
	t.Helper()
	return p.WaitLogSince(t, 0, parts...)
}

// WaitLogSince is WaitLog for lines written at or after mark (see Mark).
func (p *Proc) WaitLogSince(t testing.TB, mark int, parts ...string) string {
	t.Helper()
	line, err := p.Log.wait(mark, Timeout, p.done, parts)
	var gone errExited
	switch {
	case errors.As(err, &gone):
		t.Fatalf("%s exited (%v) before logging %q", p.Name, p.err, parts)
	case err != nil:
		t.Fatalf("%s: %v", p.Name, err)
	}
	return line
}

// String names the process and its pid.
func (p *Proc) String() string {
	if p.Cmd.Process == nil {
		return p.Name
	}
	return fmt.Sprintf("%s (pid %d)", p.Name, p.Cmd.Process.Pid)
}
