package linuxnet

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestResolvConfSetRestore(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	orig := "nameserver 192.0.2.53\nsearch example.net\noptions edns0\n"
	if err := os.WriteFile(p, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	if ns, err := ResolvConfNameservers(p); err != nil || len(ns) != 1 || ns[0] != netip.MustParseAddr("192.0.2.53") {
		t.Fatalf("nameservers %v %v", ns, err)
	}
	c, err := NewDNSController(DNSControlEtcResolvConf, "tun0", p)
	if err != nil {
		t.Fatal(err)
	}
	inode := func() uint64 {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return statIno(st)
	}
	before := inode()
	sentinels := []netip.Addr{netip.MustParseAddr("100.100.111.1"), netip.MustParseAddr("fd00:2021:1111:8000:100:100:111:1")}
	if err := c.Set(sentinels, "corp.example.com"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if !strings.Contains(string(b), "nameserver 100.100.111.1\nnameserver fd00:2021:1111:8000:100:100:111:1\nsearch corp.example.com\n") {
		t.Fatalf("written:\n%s", b)
	}
	if inode() != before {
		t.Fatal("file replaced instead of rewritten in place (breaks bind mounts)")
	}
	if err := c.Set(sentinels[:1], ""); err != nil { // a second Set keeps the first backup
		t.Fatal(err)
	}
	if err := c.Restore(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != orig {
		t.Fatalf("not restored:\n%s", b)
	}
	if _, err := os.Stat(p + ResolvConfBackupSuffix); !os.IsNotExist(err) {
		t.Fatal("backup left behind")
	}
	if err := c.Restore(); err != nil {
		t.Fatal("Restore must be idempotent")
	}
}

func TestResolvConfStaleBackup(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(p, []byte("nameserver 100.100.111.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p+ResolvConfBackupSuffix, []byte("nameserver 192.0.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &ResolvConf{Path: p}
	if err := r.RestoreStale(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "nameserver 192.0.2.1\n" {
		t.Fatalf("stale backup not restored: %s", b)
	}
}

func TestDNSControllerModes(t *testing.T) {
	if _, err := NewDNSController("bogus", "tun0", ""); err == nil {
		t.Fatal("unknown mode accepted")
	}
	c, err := NewDNSController(DNSControlDisabled, "tun0", "")
	if err != nil || c.Set(nil, "") != nil || c.Restore() != nil {
		t.Fatal("disabled must do nothing")
	}
}

func statIno(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}
