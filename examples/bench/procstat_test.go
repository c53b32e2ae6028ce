package main

import (
	"os"
	"testing"
)

func TestProcStat(t *testing.T) {
	a, err := readCPUTimes()
	if err != nil {
		t.Fatal(err)
	}
	// Burn a little CPU so our own counters move.
	x := 0
	for i := 0; i < 50_000_000; i++ {
		x += i ^ (x >> 3)
	}
	_ = x
	b, err := readCPUTimes()
	if err != nil {
		t.Fatal(err)
	}
	if b.total <= a.total {
		t.Fatalf("cpu total did not advance: %d → %d", a.total, b.total)
	}
	if s := stealPercent(a, b); s < 0 || s > 100 {
		t.Fatalf("steal %.1f%% out of range", s)
	}
	if u := busyPercent(a, b); u <= 0 || u > 100 {
		t.Fatalf("busy %.1f%% after a busy loop", u)
	}
	ticks, err := procCPUTicks(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if ticks == 0 {
		t.Fatal("own process used 0 ticks after a busy loop")
	}
	if _, err := procCPUTicks(-1); err == nil {
		t.Fatal("no error for a missing process")
	}
}
