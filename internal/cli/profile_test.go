package cli

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Go allows one CPU profile per process, so these tests do not run in
// parallel.

// burn uses 300 ms of CPU (not wall time: the machine may be loaded) so
// that a profile sampling at 100 Hz surely has samples in it; bounded by
// 30 s of wall time.
func burn() uint64 {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	var x uint64 = 1
	start, deadline := cpu(), time.Now().Add(30*time.Second)
	for cpu()-start < 300*time.Millisecond && time.Now().Before(deadline) {
		for i := 0; i < 1e6; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	return x
}

// checkProfile asserts that path holds a pprof profile: gzip-compressed
// protobuf whose content names the sample type CPU profiles have.
func checkProfile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s (%d bytes) is not a gzip-compressed pprof profile: %v", path, len(b), err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if !bytes.Contains(raw, []byte("cpu")) || !bytes.Contains(raw, []byte("nanoseconds")) {
		t.Fatalf("%s: not a CPU profile (%d bytes unpacked)", path, len(raw))
	}
	return raw
}

func TestCPUProfileWholeRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	p, err := StartCPUProfile(path, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !p.running() {
		t.Fatal("not running after start")
	}
	_ = burn()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	raw := checkProfile(t, path)
	if !bytes.Contains(raw, []byte("burn")) {
		t.Errorf("profile has no sample in burn (%d bytes unpacked)", len(raw))
	}
	// A new profile can start once the previous one stopped.
	p2, err := StartCPUProfile(filepath.Join(t.TempDir(), "again.pprof"), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Stop(); err != nil {
		t.Fatal(err)
	}
	var nilProf *CPUProfile
	if err := nilProf.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestCPUProfileBadPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no-such-dir", "cpu.pprof")
	p, err := StartCPUProfile(path, false, nil)
	if err == nil {
		p.Stop()
		t.Fatal("no error for a file in a missing directory")
	}
	if !strings.Contains(err.Error(), EnvCPUProfile) || !strings.Contains(err.Error(), path) {
		t.Errorf("error does not name the variable and the file: %v", err)
	}
	// A second profile while one runs is refused, and the first keeps going.
	first, err := StartCPUProfile(filepath.Join(t.TempDir(), "a.pprof"), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Stop()
	if p, err := StartCPUProfile(filepath.Join(t.TempDir(), "b.pprof"), false, nil); err == nil {
		p.Stop()
		t.Fatal("two CPU profiles at once")
	}
	if !first.running() {
		t.Error("the first profile stopped")
	}
}

func TestCPUProfileFromEnv(t *testing.T) {
	t.Setenv(EnvCPUProfile, "")
	p, err := StartCPUProfileFromEnv(nil)
	if p != nil || err != nil {
		t.Fatalf("unset: %v %v", p, err)
	}
	path := filepath.Join(t.TempDir(), "env.pprof")
	t.Setenv(EnvCPUProfile, path)
	t.Setenv(EnvCPUProfileSIGUSR2, "maybe")
	if p, err := StartCPUProfileFromEnv(nil); err == nil {
		p.Stop()
		t.Fatal("no error for a malformed " + EnvCPUProfileSIGUSR2)
	}
	t.Setenv(EnvCPUProfileSIGUSR2, "")
	p, err = StartCPUProfileFromEnv(nil)
	if err != nil || !p.running() {
		t.Fatalf("env: %v", err)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	checkProfile(t, path)
}

// waitState polls (bounded) until the profile's running state is want.
func waitState(t *testing.T, p *CPUProfile, want bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if p.running() == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("profile running=%v after 5 s, want %v", !want, want)
}

func TestCPUProfileSIGUSR2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usr2.pprof")
	p, err := StartCPUProfile(path, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if p.running() {
		t.Fatal("running before SIGUSR2")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, true)
	_ = burn()
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, false)
	checkProfile(t, path) // written at the second signal, before Stop
	// A third signal is ignored (the handler is still installed, so the
	// process survives it), and Stop leaves the written profile alone.
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if p.running() {
		t.Fatal("a third SIGUSR2 restarted profiling")
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if raw := checkProfile(t, path); !bytes.Contains(raw, []byte("burn")) {
		t.Error("profile has no sample in burn")
	}
}

func TestCPUProfileSIGUSR2Never(t *testing.T) {
	path := filepath.Join(t.TempDir(), "never.pprof")
	p, err := StartCPUProfile(path, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	checkProfile(t, path) // empty but valid, not zero bytes
}

// The binaries' pattern, in a child process: profile from the environment,
// SignalContext, SIGTERM, Stop on the way out. The profile must be
// complete after the orderly exit.
const childEnv = "GOZONE_CLI_PROFILE_TEST_CHILD"

func TestCPUProfileFlushedOnSIGTERM(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		profileChild()
		return
	}
	path := filepath.Join(t.TempDir(), "child.pprof")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCPUProfileFlushedOnSIGTERM$")
	cmd.Env = append(os.Environ(), childEnv+"=1", EnvCPUProfile+"="+path, EnvCPUProfileSIGUSR2+"=")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The child says "ready" once it profiles and waits for the signal.
	buf := make([]byte, 64)
	var got []byte
	for !bytes.Contains(got, []byte("ready")) {
		n, err := out.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("child: %v (%q)", err, got)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, out) //nolint:errcheck
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child did not exit cleanly: %v", err)
	}
	if raw := checkProfile(t, path); !bytes.Contains(raw, []byte("burn")) {
		t.Error("child profile has no sample in burn")
	}
}

func profileChild() {
	p, err := StartCPUProfileFromEnv(nil)
	if err != nil || p == nil {
		os.Exit(3)
	}
	defer p.Stop()
	ctx, stop := SignalContext(context.Background())
	defer stop()
	_ = burn()
	os.Stdout.WriteString("ready\n")
	<-ctx.Done()
}
