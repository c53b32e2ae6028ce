package testproc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCanonical(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{".", ModulePath + "/internal/testproc"},
		{"./testdata/child", ModulePath + "/internal/testproc/testdata/child"},
		{"../../gateway", GatewayPkg},
		{GatewayPkg, GatewayPkg},
		{"example.com/other/cmd", "example.com/other/cmd"},
	} {
		got, err := canonical(c.in)
		if err != nil || got != c.want {
			t.Errorf("canonical(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// TestBuildOnce: both names of one package give the same binary, built
// once into a directory others may enter (setpriv tests run it as nobody).
func TestBuildOnce(t *testing.T) {
	a := Build(t, "./testdata/child")
	st, err := os.Stat(a)
	if err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("binary %s: %v %v", a, st, err)
	}
	b := Build(t, ModulePath+"/internal/testproc/testdata/child")
	if a != b || filepath.Base(a) != "child" {
		t.Fatalf("two builds: %s and %s", a, b)
	}
	if st2, err := os.Stat(b); err != nil || !st2.ModTime().Equal(st.ModTime()) {
		t.Fatalf("rebuilt: %v %v", st2, err)
	}
	dir, err := os.Stat(filepath.Dir(a))
	if err != nil || dir.Mode().Perm() != 0o755 {
		t.Fatalf("build directory %v %v, want mode 0755", dir, err)
	}
}

// TestBuildFailureCached: a package that does not build fails every time
// with go build's output, and go build runs once.
func TestBuildFailureCached(t *testing.T) {
	_, err := build("./testdata/no-such-package")
	if err == nil || !strings.Contains(err.Error(), "go build") {
		t.Fatalf("err %v", err)
	}
	_, err2 := build("./testdata/no-such-package")
	if err2 != err {
		t.Fatalf("second call: %v, want the cached %v", err2, err)
	}
	wantFatal(t, "go build", func(tb testing.TB) { Build(tb, "./testdata/no-such-package") })
}

// TestBuildNeedsMain: without testproc.Main in TestMain the binaries would
// never be removed, so Build refuses.
func TestBuildNeedsMain(t *testing.T) {
	mainCalled.Store(false)
	defer mainCalled.Store(true)
	wantFatal(t, "TestMain must call testproc.Main", func(tb testing.TB) { Build(tb, "./testdata/child") })
}
