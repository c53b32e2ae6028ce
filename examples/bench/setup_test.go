package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestRunProbesCountsFailures(t *testing.T) {
	var failed []int
	st := runProbes(context.Background(), 6, func(i int) (time.Duration, error) {
		if i == 1 || i == 4 {
			return 0, fmt.Errorf("no reply %d\nlog tail that must not be in the summary", i)
		}
		return time.Duration(i+1) * time.Millisecond, nil
	}, func(i int, err error) { failed = append(failed, i) })
	if len(st.ok) != 4 || st.failed != 2 || st.stopped != "" {
		t.Fatalf("ok %d failed %d stopped %q", len(st.ok), st.failed, st.stopped)
	}
	if fmt.Sprint(failed) != "[1 4]" {
		t.Errorf("onFail for %v, want [1 4]", failed)
	}
	if len(st.errs) != 2 || st.errs[0] != "probe 2: no reply 1" {
		t.Errorf("errors %q", st.errs)
	}
	var sr setupResult
	st.fill(&sr)
	// Successful probes took 1, 3, 4, 6 ms: median 3.5.
	if sr.N != 4 || sr.Failed != 2 || sr.MedianMs != 3.5 {
		t.Errorf("result %+v", sr)
	}

	// A failure after which nothing can work stops the probes.
	calls := 0
	st = runProbes(context.Background(), 5, func(i int) (time.Duration, error) {
		calls++
		if i == 2 {
			return 0, fmt.Errorf("%w: gozone gateway exited", errNoMoreProbes)
		}
		return time.Millisecond, nil
	}, nil)
	if calls != 3 || st.failed != 1 || !strings.Contains(st.stopped, "probe 3 of 5") {
		t.Errorf("calls %d failed %d stopped %q", calls, st.failed, st.stopped)
	}

	// A cancelled context is not a probe failure.
	ctx, cancel := context.WithCancel(context.Background())
	st = runProbes(ctx, 5, func(i int) (time.Duration, error) {
		cancel()
		return 0, ctx.Err()
	}, nil)
	if st.failed != 0 || !strings.Contains(st.stopped, "interrupted") {
		t.Errorf("cancelled: failed %d stopped %q", st.failed, st.stopped)
	}
}

func TestFailureLog(t *testing.T) {
	f := &failureLog{dir: t.TempDir()}
	gw, cl := &captureBuf{}, &captureBuf{}
	fmt.Fprintln(gw, `{"msg":"authorization created"}`)
	fmt.Fprint(cl, `{"msg":"client started"}`)
	f.add("probe 3 failed", [2]string{"gateway", gw.String()}, [2]string{"client", cl.String()})
	gw.Reset()
	fmt.Fprintln(gw, `{"msg":"second failure"}`)
	f.add("probe 9 failed", [2]string{"gateway", gw.String()})
	if f.err != nil || f.path == "" {
		t.Fatalf("path %q err %v", f.path, f.err)
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"=== probe 3 failed", "--- gateway:\n{\"msg\":\"authorization created\"}\n", "--- client:\n{\"msg\":\"client started\"}\n", "=== probe 9 failed", "second failure"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("log lacks %q:\n%s", want, b)
		}
	}
	if bytes.Count(b, []byte("authorization created")) != 1 {
		t.Errorf("Reset did not clear the capture:\n%s", b)
	}
	bad := &failureLog{dir: "/nonexistent-dir-for-bench-test"}
	bad.add("x")
	if bad.err == nil {
		t.Error("no error for an unwritable directory")
	}
}

func TestCaptureBufCap(t *testing.T) {
	c := &captureBuf{}
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	for i := 0; i < 10; i++ {
		if n, err := c.Write(chunk); n != len(chunk) || err != nil {
			t.Fatal(n, err)
		}
	}
	s := c.String()
	if !strings.Contains(s, fmt.Sprintf("[… %d more bytes not kept]", 2<<20)) || len(s) > captureMax+100 {
		t.Errorf("cap: len %d, tail %q", len(s), s[len(s)-40:])
	}
	c.Reset()
	if c.String() != "" {
		t.Error("Reset left data")
	}
}

func TestPrintSetup(t *testing.T) {
	var b bytes.Buffer
	printSetup(&b, &setupResult{Path: "gozone-direct", What: "w", N: 18, Failed: 2, MedianMs: 120.5,
		Errors: []string{"probe 4: no reply", "probe 11: no reply"}, FailureLog: "/tmp/f.log"})
	for _, want := range []string{"median 120.50 ms; 18 ok, 2 failed", "probe 11: no reply", "logs of the failed probes: /tmp/f.log"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	printSetup(&b, &setupResult{Path: "gozone-direct", N: 0, Failed: 3})
	if !strings.Contains(b.String(), "no median; 0 ok, 3 failed") {
		t.Errorf("all failed:\n%s", b.String())
	}
}
