package testproc

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gozone/gozone/internal/netns"
)

func TestEtcDir(t *testing.T) {
	dir := EtcDir(t, map[string]string{"hosts": "10.9.8.7 testproc.example\n"})
	if b, err := os.ReadFile(filepath.Join(dir, "hosts")); err != nil || string(b) != "10.9.8.7 testproc.example\n" {
		t.Fatalf("hosts: %q %v", b, err)
	}
	host, hostErr := os.ReadFile("/etc/os-release")
	copied, err := os.ReadFile(filepath.Join(dir, "os-release"))
	if hostErr == nil && (err != nil || string(copied) != string(host)) {
		t.Fatalf("os-release not copied: %v", err)
	}
	dir = EtcDir(t, map[string]string{"os-release": "ID=test\n"})
	if b, _ := os.ReadFile(filepath.Join(dir, "os-release")); string(b) != "ID=test\n" {
		t.Fatalf("given os-release replaced: %q", b)
	}
}

// TestWithEtc: the process sees the directory as /etc; the host's /etc
// is untouched.
func TestWithEtc(t *testing.T) {
	netns.RequireRoot(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("unshare (util-linux) is needed")
	}
	dir := EtcDir(t, map[string]string{"hosts": "10.9.8.7 testproc.example\n"})
	p := Start(t, nil, "child", WithEtc(dir, child(t), "cat:/etc/hosts"))
	if code := p.ExitCode(t, Timeout); code != 0 {
		t.Fatalf("exit %d: %s", code, p.Log)
	}
	p.WaitLog(t, "testproc.example")
	if b, _ := os.ReadFile("/etc/hosts"); strings.Contains(string(b), "testproc.example") {
		t.Fatal("the host's /etc changed")
	}
}

func TestWaitNameserver(t *testing.T) {
	rc := filepath.Join(EtcDir(t, map[string]string{"resolv.conf": "nameserver 192.0.2.53\n"}), "resolv.conf")
	if _, err := waitNameserver(rc, "100.100.111.", 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), "nameserver 192.0.2.53") {
		t.Fatalf("err %v, want one showing the file", err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		_ = os.WriteFile(rc+".tmp", []byte("# rewritten\nnameserver 100.100.111.1 extra\nnameserver 100.100.111.2\n"), 0o644)
		_ = os.Rename(rc+".tmp", rc)
	}()
	if a := WaitNameserver(t, rc, "100.100.111."); a.String() != "100.100.111.2" {
		t.Fatalf("nameserver %v", a)
	}
}
