package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gozone/gozone/internal/netns"
)

// The binaries are built once per test process and removed by TestMain.
var bins struct {
	once                    sync.Once
	dir                     string
	client, gateway, portal string
	err                     error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// buildBinaries runs `go build` for the client, gateway and portal once.
func buildBinaries(t *testing.T) {
	t.Helper()
	bins.once.Do(func() {
		dir, err := os.MkdirTemp("", "gozone-e2e-faults")
		if err != nil {
			bins.err = err
			return
		}
		bins.dir = dir
		bins.client = filepath.Join(dir, "client")
		bins.gateway = filepath.Join(dir, "gateway")
		bins.portal = filepath.Join(dir, "portal")
		for _, b := range [][2]string{{bins.client, "../../client"}, {bins.gateway, "../../gateway"}, {bins.portal, "../../examples/portal/cmd/portal"}} {
			if out, err := exec.Command("go", "build", "-o", b[0], b[1]).CombinedOutput(); err != nil {
				bins.err = fmt.Errorf("go build %s: %v\n%s", b[1], err, out)
				return
			}
		}
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
}

// wait bounds every "until something happens" loop of the tests; the
// machines running them are slow and shared.
const wait = 60 * time.Second

// logBuf is a goroutine-safe sink for a child process's output.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// proc is a binary running in one of the topology's namespaces (or one
// the test added). It is stopped on cleanup, before the namespaces go.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *logBuf
	done chan struct{}
	err  error // exit error, valid once done is closed
	// portalID is the id the portal gave a gateway (its log and the
	// client's status name gateways by it).
	portalID string
}

// start runs cmd in ns with its output captured, dumped to the test log if
// the test fails.
func start(t *testing.T, ns *netns.NS, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	pr := &proc{name: name, cmd: cmd, log: &logBuf{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = pr.log, pr.log
	if err := ns.Start(cmd); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		pr.err = cmd.Wait()
		close(pr.done)
	}()
	t.Cleanup(func() {
		_ = pr.stop()
		if t.Failed() {
			t.Logf("%s log:\n%s", name, tail(pr.log.String(), 60))
		}
	})
	return pr
}

// stop ends the process (SIGTERM, SIGKILL after 5 s) and returns its exit
// error; calling it again is harmless.
func (pr *proc) stop() error {
	select {
	case <-pr.done:
		return pr.err
	default:
	}
	_ = pr.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-pr.done:
	case <-time.After(5 * time.Second):
		_ = pr.cmd.Process.Kill()
		<-pr.done
	}
	return pr.err
}

// signal sends sig to the process.
func (pr *proc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := pr.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", pr.name, err)
	}
}

// mark is the current length of the log, for waitLogSince.
func (pr *proc) mark() int { return len(pr.log.String()) }

// waitLog waits for a log line containing all of parts.
func (pr *proc) waitLog(t *testing.T, parts ...string) string {
	t.Helper()
	return pr.waitLogSince(t, 0, parts...)
}

// waitLogSince waits for a line containing all of parts that was written
// after mark m.
func (pr *proc) waitLogSince(t *testing.T, m int, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		if l, ok := findLine(pr.log.String()[m:], parts...); ok {
			return l
		}
		select {
		case <-pr.done:
			if l, ok := findLine(pr.log.String()[m:], parts...); ok {
				return l
			}
			t.Fatalf("%s exited before logging %q", pr.name, parts)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no log line with %q", pr.name, parts)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// count is the number of log lines containing all of parts.
func (pr *proc) count(parts ...string) int {
	n := 0
	for _, l := range strings.Split(pr.log.String(), "\n") {
		if lineHas(l, parts) {
			n++
		}
	}
	return n
}

// running fails the test if the process has exited.
func (pr *proc) running(t *testing.T) {
	t.Helper()
	select {
	case <-pr.done:
		t.Fatalf("%s exited: %v", pr.name, pr.err)
	default:
	}
}

// kill ends the process at once (SIGKILL: a crash, no goodbye) and waits.
func (pr *proc) kill(t *testing.T) {
	t.Helper()
	_ = pr.cmd.Process.Kill()
	select {
	case <-pr.done:
	case <-time.After(wait):
		t.Fatalf("%s did not die", pr.name)
	}
}

func findLine(s string, parts ...string) (string, bool) {
	for _, l := range strings.Split(s, "\n") {
		if lineHas(l, parts) {
			return l, true
		}
	}
	return "", false
}

func lineHas(l string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(l, p) {
			return false
		}
	}
	return true
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
