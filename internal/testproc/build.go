package testproc

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// The main packages the end-to-end tests run, as import paths (Build
// accepts these from any package of the module).
const (
	ModulePath = "github.com/gozone/gozone"
	GatewayPkg = ModulePath + "/gateway"
	ClientPkg  = ModulePath + "/client"
	PortalPkg  = ModulePath + "/examples/portal/cmd/portal"
)

// builds caches the binaries of this test process: one directory, one
// entry per package. dir is world-readable and traversable (0755) so
// tests may run a binary as an unprivileged user (setpriv).
var builds struct {
	mu      sync.Mutex
	dir     string
	entries map[string]*buildEntry
	names   map[string]bool
}

type buildEntry struct {
	once sync.Once
	path string
	err  error
}

// mainCalled is set by Main; Build refuses to run without it, because
// only Main removes the binaries.
var mainCalled atomic.Bool

// Main runs the package's tests and removes the binaries Build made, then
// exits with the tests' status. A package that calls Build must have
//
//	func TestMain(m *testing.M) { testproc.Main(m) }
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()
	builds.mu.Lock()
	dir := builds.dir
	builds.mu.Unlock()
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
	os.Exit(code)
}

// Build compiles the main package pkg (an import path such as GatewayPkg,
// or a directory relative to the test's package, such as ".") with
// `go build` once per test process, and returns the binary's path. Calls
// for the same package, also named the other way, share one build and its
// result, a failed one included; concurrent calls wait for it. The
// binary's name is the package's last path element (e.g. "gateway").
// Build fails the test on error.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatal("testproc.Build: the package's TestMain must call testproc.Main (it removes the binaries)")
	}
	p, err := build(pkg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// build is Build without the test: the cached build of pkg.
func build(pkg string) (string, error) {
	key, err := canonical(pkg)
	if err != nil {
		return "", err
	}
	builds.mu.Lock()
	if builds.entries == nil {
		builds.entries = map[string]*buildEntry{}
		builds.names = map[string]bool{}
	}
	e := builds.entries[key]
	if e == nil {
		e = &buildEntry{}
		builds.entries[key] = e
	}
	builds.mu.Unlock()
	e.once.Do(func() { e.path, e.err = goBuild(key) })
	return e.path, e.err
}

// goBuild builds key into the shared directory under a name not used yet.
func goBuild(key string) (string, error) {
	builds.mu.Lock()
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "gozone-testproc-")
		if err == nil {
			err = os.Chmod(dir, 0o755)
		}
		if err != nil {
			builds.mu.Unlock()
			return "", fmt.Errorf("testproc: build directory: %w", err)
		}
		builds.dir = dir
	}
	name := path.Base(key)
	for i := 2; builds.names[name]; i++ {
		name = fmt.Sprintf("%s-%d", path.Base(key), i)
	}
	builds.names[name] = true
	bin := filepath.Join(builds.dir, name)
	builds.mu.Unlock()
	if out, err := exec.Command("go", "build", "-o", bin, key).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", key, err, out)
	}
	return bin, nil
}

// canonical names pkg by its import path, so that "." in the gateway's
// tests and GatewayPkg are one build. A relative directory outside any
// module keeps its absolute path.
func canonical(pkg string) (string, error) {
	if pkg != "." && pkg != ".." && !strings.HasPrefix(pkg, "./") && !strings.HasPrefix(pkg, "../") && !filepath.IsAbs(pkg) {
		return pkg, nil
	}
	dir, err := filepath.Abs(pkg)
	if err != nil {
		return "", fmt.Errorf("testproc: %s: %w", pkg, err)
	}
	for root := dir; ; root = filepath.Dir(root) {
		if mod, ok := modulePath(filepath.Join(root, "go.mod")); ok {
			rel, err := filepath.Rel(root, dir)
			if err != nil {
				return dir, nil
			}
			if rel == "." {
				return mod, nil
			}
			return mod + "/" + filepath.ToSlash(rel), nil
		}
		if filepath.Dir(root) == root {
			return dir, nil
		}
	}
}

// modulePath reads the module line of a go.mod file.
func modulePath(gomod string) (string, bool) {
	f, err := os.Open(gomod)
	if err != nil {
		return "", false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if f := strings.Fields(s.Text()); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`), true
		}
	}
	return "", false
}
