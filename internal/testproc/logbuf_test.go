package testproc

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestLogBufferCompleteLines(t *testing.T) {
	var l LogBuffer
	fmt.Fprint(&l, "first line\n{\"msg\":\"half")
	if _, ok := l.Find(0, "half"); ok {
		t.Fatal("matched an unterminated line")
	}
	m := l.Len()
	fmt.Fprint(&l, "\",\"n\":1}\nlast\n")
	if line, ok := l.Find(0, "half", "n"); !ok || line != `{"msg":"half","n":1}` {
		t.Fatalf("Find = %q %v", line, ok)
	}
	// From a mark inside a line: the rest of that line counts.
	if line, ok := l.Find(m, "n"); !ok || line != `","n":1}` {
		t.Fatalf("Find from mark = %q %v", line, ok)
	}
	if _, ok := l.Find(l.Len(), "last"); ok {
		t.Fatal("Find at Len matched")
	}
	if _, ok := l.Find(-5, "first"); !ok {
		t.Fatal("negative mark")
	}
	if _, ok := l.Find(1 << 20); ok {
		t.Fatal("mark past the end matched")
	}
	if n := l.Count("a"); n != 2 {
		t.Fatalf("Count = %d", n)
	}
	if got := l.Tail(2); got != "last\n" {
		t.Fatalf("Tail = %q", got)
	}
	if got := Tail("a\nb\nc", 5); got != "a\nb\nc" {
		t.Fatalf("Tail of a short text = %q", got)
	}
}

// TestLogBufferWaitLine: a waiter wakes on the write that completes its
// line; writers and readers run concurrently (run with -race).
func TestLogBufferWaitLine(t *testing.T) {
	var l LogBuffer
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				fmt.Fprintf(&l, "writer %d line %d\n", w, i)
				_ = l.String()
			}
		}()
	}
	go func() {
		wg.Wait()
		fmt.Fprint(&l, "the ")
		time.Sleep(20 * time.Millisecond)
		fmt.Fprint(&l, "end\n")
	}()
	if got := l.WaitLine(t, 0, Timeout, "the", "end"); got != "the end" {
		t.Fatalf("WaitLine = %q", got)
	}
	if n := l.Count("line"); n != 800 {
		t.Fatalf("%d lines", n)
	}
}

func TestLogBufferWaitLineTimeout(t *testing.T) {
	var l LogBuffer
	fmt.Fprint(&l, "something else\n")
	start := time.Now()
	wantFatal(t, `no log line with ["never"]`, func(tb testing.TB) { l.WaitLine(tb, 0, 100*time.Millisecond, "never") })
	if time.Since(start) > 30*time.Second {
		t.Fatal("timeout not honoured")
	}
	if !LineHas("abc", "a", "c") || LineHas("abc", "a", "d") || !LineHas("abc") {
		t.Fatal("LineHas")
	}
}
