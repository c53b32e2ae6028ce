package testproc

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// etcScript bind-mounts its first argument over /etc, then becomes the
// rest of its arguments.
const etcScript = `mount --bind "$1" /etc && shift && exec "$@"`

// WithEtc returns a command that runs bin with args in a private mount
// namespace (unshare --mount --propagation private) where etcDir is
// bind-mounted over /etc, so the process has its own resolv.conf and
// hosts and nothing it writes under /etc reaches the host. It needs root
// (or CAP_SYS_ADMIN) when it runs; the mount goes with the process.
func WithEtc(etcDir, bin string, args ...string) *exec.Cmd {
	full := append([]string{"--mount", "--propagation", "private", "sh", "-c", etcScript, "sh", etcDir, bin}, args...)
	return exec.Command("unshare", full...)
}

// EtcDir makes a directory for WithEtc in the test's temporary directory
// with files (name → content, mode 0644) and a copy of the host's
// /etc/os-release if there is one (programs read it to describe the
// system). It fails the test on error.
func EtcDir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		files = withDefault(files, "os-release", string(b))
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// withDefault returns files plus name → content unless files has name.
func withDefault(files map[string]string, name, content string) map[string]string {
	if _, ok := files[name]; ok {
		return files
	}
	out := make(map[string]string, len(files)+1)
	for k, v := range files {
		out[k] = v
	}
	out[name] = content
	return out
}

// WaitNameserver waits up to Timeout until the resolv.conf at path (in a
// directory of EtcDir, say) names a nameserver whose address starts with
// prefix, e.g. the DNS sentinel the client writes there, and returns that
// address. It fails the test, showing the file, when none comes.
func WaitNameserver(t testing.TB, path, prefix string) netip.Addr {
	t.Helper()
	a, err := waitNameserver(path, prefix, Timeout)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func waitNameserver(path, prefix string, timeout time.Duration) (netip.Addr, error) {
	var found netip.Addr
	err := Poll(timeout, PollInterval, func() error {
		b, _ := os.ReadFile(path)
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "nameserver" {
				if a, err := netip.ParseAddr(f[1]); err == nil && strings.HasPrefix(a.String(), prefix) {
					found = a
					return nil
				}
			}
		}
		return fmt.Errorf("%s names no nameserver %s*:\n%s", path, prefix, b)
	})
	return found, err
}
