package testproc

import (
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestProcLifecycle(t *testing.T) {
	p := Start(t, nil, "child", exec.Command(child(t), "print:hello", "stderr:to stderr", "wait"))
	p.WaitLog(t, "waiting")
	if p.WaitLog(t, "stderr") != "to stderr" {
		t.Fatal("stderr not captured")
	}
	m := p.Mark()
	if _, ok := p.Log.Find(m, "usr1"); ok {
		t.Fatal("usr1 before the signal")
	}
	p.Signal(t, syscall.SIGUSR1)
	p.WaitLogSince(t, m, "usr1")
	p.Running(t)
	if exited, _ := p.Exited(); exited {
		t.Fatal("exited early")
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop after a clean SIGTERM exit: %v", err)
	}
	p.WaitLog(t, "term")
	if exited, err := p.Exited(); !exited || err != nil {
		t.Fatalf("Exited = %v %v", exited, err)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if code := p.ExitCode(t, time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if !strings.HasPrefix(p.String(), "child (pid ") {
		t.Fatalf("String = %q", p.String())
	}
}

func TestProcExitCode(t *testing.T) {
	p := Start(t, nil, "child", exec.Command(child(t), "stderr:bad input", "exit:3"))
	if code := p.ExitCode(t, Timeout); code != 3 {
		t.Fatalf("exit code %d", code)
	}
	p.WaitLog(t, "bad input")
	// Still running at the deadline: a failure, not a code.
	q := Start(t, nil, "sleeper", exec.Command(child(t), "wait"))
	wantFatal(t, "sleeper did not exit within", func(tb testing.TB) { q.ExitCode(tb, 50*time.Millisecond) })
}

// TestWaitLogExited: a process that exits without the line fails the
// wait at once instead of after Timeout; its last line counts even
// without a newline.
func TestWaitLogExited(t *testing.T) {
	p := Start(t, nil, "child", exec.Command("sh", "-c", `echo one; printf "last words"`))
	start := time.Now()
	wantFatal(t, "child exited (<nil>) before logging", func(tb testing.TB) { p.WaitLog(tb, "never") })
	if time.Since(start) > Timeout/2 {
		t.Fatalf("waited %v for a process that had exited", time.Since(start))
	}
	if got := p.WaitLog(t, "words"); got != "last words" {
		t.Fatalf("unterminated last line: %q", got)
	}
	wantFatal(t, "child exited", func(tb testing.TB) { p.Running(tb) })
}

// TestWaitLogWholeLine: a line written in two pieces is returned whole.
func TestWaitLogWholeLine(t *testing.T) {
	p := Start(t, nil, "child", exec.Command(child(t), `half:{"garbage_datagrams":7}`, "wait"))
	line := p.WaitLog(t, "garbage_datagrams")
	var m struct {
		N int `json:"garbage_datagrams"`
	}
	if err := json.Unmarshal([]byte(line), &m); err != nil || m.N != 7 {
		t.Fatalf("line %q: %v", line, err)
	}
}

// TestStopKillsAfterGrace: a process that ignores SIGTERM is killed.
func TestStopKillsAfterGrace(t *testing.T) {
	p := Start(t, nil, "stubborn", exec.Command(child(t), "ignore"))
	p.StopGrace = 200 * time.Millisecond
	p.WaitLog(t, "waiting")
	err := p.Stop()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("Stop = %v, want killed", err)
	}
	p.WaitLog(t, "term")
}

func TestKill(t *testing.T) {
	p := Start(t, nil, "child", exec.Command(child(t), "wait"))
	p.WaitLog(t, "waiting")
	p.Kill(t)
	if code := p.ExitCode(t, time.Second); code != -1 {
		t.Fatalf("exit code %d after SIGKILL", code)
	}
	if p.Log.Count("term") != 0 {
		t.Fatal("SIGKILL looked like SIGTERM")
	}
}

// TestCleanupStops: the cleanup Start registers stops the process when
// the (sub)test ends.
func TestCleanupStops(t *testing.T) {
	var p *Proc
	t.Run("sub", func(t *testing.T) {
		p = Start(t, nil, "child", exec.Command(child(t), "wait"))
		p.WaitLog(t, "waiting")
	})
	if exited, err := p.Exited(); !exited || err != nil {
		t.Fatalf("after the subtest: exited %v, %v", exited, err)
	}
	p.WaitLog(t, "term")
}

// starterFunc adapts a function to Starter.
type starterFunc func(*exec.Cmd) error

func (f starterFunc) Start(cmd *exec.Cmd) error { return f(cmd) }

func TestStartIn(t *testing.T) {
	used := false
	in := starterFunc(func(cmd *exec.Cmd) error {
		used = true
		return cmd.Start()
	})
	p := Start(t, in, "child", exec.Command(child(t), "print:ok"))
	if p.ExitCode(t, Timeout) != 0 || !used {
		t.Fatal("Starter not used")
	}
	wantFatal(t, "start refused: no namespace", func(tb testing.TB) {
		Start(tb, starterFunc(func(*exec.Cmd) error { return errors.New("no namespace") }), "refused", exec.Command(child(t)))
	})
	wantFatal(t, "start missing", func(tb testing.TB) {
		Start(tb, nil, "missing", exec.Command("/nonexistent/testproc-binary"))
	})
}
