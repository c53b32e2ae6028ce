package testproc

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
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
