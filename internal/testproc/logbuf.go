package testproc

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// LogBuffer collects a child process's output (use it as both Stdout and
// Stderr) and lets tests wait for lines in it. It only grows. All methods
// are safe for concurrent use; the zero value is ready.
//
// Offsets ("marks") are byte positions from Len: a test takes a mark
// before it causes something and then looks only at what was written
// after it. Find, Count and WaitLine match complete lines only (those
// ending in '\n'), so a line that a writer delivers in two pieces is never
// returned cut short.
type LogBuffer struct {
	mu sync.Mutex
	b  []byte
	// grew is closed and replaced by every Write: waiters select on it
	// instead of sleeping.
	grew chan struct{}
}

// Write appends p. It never fails.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	if l.grew != nil {
		close(l.grew)
		l.grew = nil
	}
	return len(p), nil
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// Len is the number of bytes written so far: a mark for Find and
// WaitLine.
func (l *LogBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.b)
}

// Tail returns the last n lines (for failure messages).
func (l *LogBuffer) Tail(n int) string { return Tail(l.String(), n) }

// Find returns the first complete line written at or after mark that
// contains every one of parts. A mark out of range counts as 0 or Len.
func (l *LogBuffer) Find(mark int, parts ...string) (string, bool) {
	return l.find(mark, false, parts)
}

// Count is the number of complete lines that contain every one of parts.
func (l *LogBuffer) Count(parts ...string) int {
	n := 0
	for _, line := range strings.SplitAfter(l.String(), "\n") {
		if strings.HasSuffix(line, "\n") && LineHas(line, parts...) {
			n++
		}
	}
	return n
}

// WaitLine waits up to timeout for a complete line written at or after
// mark that contains every one of parts, and returns it without its
// newline. It fails the test when none comes.
func (l *LogBuffer) WaitLine(t testing.TB, mark int, timeout time.Duration, parts ...string) string {
	t.Helper()
	line, err := l.wait(mark, timeout, nil, parts)
	if err != nil {
		t.Fatal(err)
	}
	return line
}

// errExited is the reason wait gives up when the writer is gone.
type errExited struct{}

func (errExited) Error() string { return "the writer is gone" }

// wait is WaitLine that also stops when gone is closed (the process
// writing the log has exited: nothing more will come, so the last,
// unterminated line counts too).
func (l *LogBuffer) wait(mark int, timeout time.Duration, gone <-chan struct{}, parts []string) (string, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		grew := l.changed()
		if line, ok := l.find(mark, false, parts); ok {
			return line, nil
		}
		select {
		case <-grew:
		case <-gone:
			if line, ok := l.find(mark, true, parts); ok {
				return line, nil
			}
			return "", errExited{}
		case <-timer.C:
			return "", &timeoutError{parts: parts, timeout: timeout}
		}
	}
}

// timeoutError says which line did not come.
type timeoutError struct {
	parts   []string
	timeout time.Duration
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("no log line with %q within %v", e.parts, e.timeout)
}

// changed returns a channel closed by the next Write.
func (l *LogBuffer) changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.grew == nil {
		l.grew = make(chan struct{})
	}
	return l.grew
}

// find looks at the lines from mark on; with partial, an unterminated
// last line counts too.
func (l *LogBuffer) find(mark int, partial bool, parts []string) (string, bool) {
	l.mu.Lock()
	mark = min(max(mark, 0), len(l.b))
	s := l.b[mark:]
	if !partial {
		s = s[:bytes.LastIndexByte(s, '\n')+1]
	}
	text := string(s)
	l.mu.Unlock()
	for _, line := range strings.Split(text, "\n") {
		if LineHas(line, parts...) && (line != "" || len(parts) > 0) {
			return line, true
		}
	}
	return "", false
}

// LineHas reports whether line contains every one of parts.
func LineHas(line string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(line, p) {
			return false
		}
	}
	return true
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
