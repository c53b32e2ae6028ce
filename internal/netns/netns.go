// Package netns is gozone's network-namespace test harness: it creates
// throw-away network namespaces, veth links between them, addresses, routes,
// sysctls and nftables rules (masquerade, random drop), and runs Go code or
// child processes inside a namespace. Everything it creates is removed by
// t.Cleanup, also when the test fails.
//
// It needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); tests call RequireRoot
// first. It uses netlink and nftables through Go libraries
// (vishvananda/netlink, vishvananda/netns, google/nftables), so no iproute2
// or nft binary is needed.
//
// Namespace names are global (they live in /run/netns) and are made unique
// per process and per call; link names are per namespace, so tests may reuse
// short names like "veth0" freely inside their own namespaces.
package netns

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RequireRoot skips the test when the process is not root, with a message
// saying why, and fails it instead when the environment variable CI is set,
// so that CI never silently skips the privileged tests.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	const msg = "needs root (network namespaces, netlink, nftables, /dev/net/tun)"
	if os.Getenv("CI") != "" {
		t.Fatalf("%s; CI is set, so this is a failure, not a skip", msg)
	}
	t.Skipf("%s; run as root or set up CI", msg)
}

// NS is one network namespace created by New. Its methods are safe for
// concurrent use. It is deleted by the t.Cleanup New registers; after that
// every method fails.
type NS struct {
	name   string
	handle vns.NsHandle
	nl     *netlink.Handle
}

var seq atomic.Uint32

// New creates a fresh, empty network namespace (only a down "lo", which New
// brings up) whose name starts with prefix, and registers its removal with
// t.Cleanup. It calls t.Fatal on error.
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	sweepOnce.Do(sweepStale)
	n, err := create(prefix)
	if err != nil {
		t.Fatalf("netns: %v", err)
	}
	t.Cleanup(func() {
		if err := n.delete(); err != nil {
			t.Errorf("netns: delete %s: %v", n.name, err)
		}
	})
	if err := n.LinkUp("lo"); err != nil {
		t.Fatalf("netns: %v", err)
	}
	return n
}

var (
	sweepOnce sync.Once
	// staleName matches names made by uniqueName: prefix-pid-seq-random.
	staleName = regexp.MustCompile(`^[A-Za-z0-9]+-([0-9]+)-[0-9]+-[0-9a-f]{6}$`)
)

// sweepStale deletes namespaces this package created in test processes
// that no longer exist. A test binary killed by -timeout never runs its
// cleanups; without the sweep its namespaces would pile up in /run/netns.
func sweepStale() {
	for _, dir := range []string{"/run/netns", "/var/run/netns"} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			m := staleName.FindStringSubmatch(e.Name())
			if m == nil {
				continue
			}
			pid, err := strconv.Atoi(m[1])
			if err != nil || pid == os.Getpid() {
				continue
			}
			if _, err := os.Stat("/proc/" + m[1]); err == nil {
				continue // owner still running
			}
			_ = deleteNamed(dir + "/" + e.Name())
		}
	}
}

func uniqueName(prefix string) string {
	var r [3]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%s-%d-%d-%s", prefix, os.Getpid(), seq.Add(1), hex.EncodeToString(r[:]))
}

func create(prefix string) (*NS, error) {
	return createNamed(uniqueName(prefix))
}

func createNamed(name string) (*NS, error) {
	type result struct {
		h   vns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	// vns.NewNamed unshares the calling thread into the new namespace, so
	// it runs on a dedicated locked thread that is switched back (or thrown
	// away if switching back fails).
	go func() {
		runtime.LockOSThread()
		orig, err := vns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer orig.Close()
		h, err := vns.NewNamed(name)
		if rerr := vns.Set(orig); rerr != nil {
			// Leave the thread locked: the runtime ends it with this
			// goroutine instead of reusing a thread in the wrong namespace.
			ch <- result{h: h, err: errors.Join(err, fmt.Errorf("restore namespace: %w", rerr))}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{h: h, err: err}
	}()
	r := <-ch
	if r.err != nil {
		if r.h.IsOpen() {
			r.h.Close()
			_ = vns.DeleteNamed(name)
		}
		return nil, fmt.Errorf("create namespace %s: %w", name, r.err)
	}
	nl, err := netlink.NewHandleAt(r.h)
	if err != nil {
		r.h.Close()
		_ = vns.DeleteNamed(name)
		return nil, fmt.Errorf("netlink handle in %s: %w", name, err)
	}
	return &NS{name: name, handle: r.h, nl: nl}, nil
}

func (n *NS) delete() error {
	n.nl.Close()
	n.handle.Close()
	return deleteNamed("/run/netns/" + n.name)
}

// deleteNamed unmounts and removes a namespace file. EINVAL from umount
// means the path is not (or no longer visibly) a mount point, e.g. because
// /run/netns was later bind-mounted over itself by `ip netns`; the file is
// then only a name and is removed anyway.
func deleteNamed(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Name is the namespace's name as `ip netns` shows it.
func (n *NS) Name() string { return n.name }

// Handle is an open file descriptor of the namespace, valid until cleanup.
func (n *NS) Handle() vns.NsHandle { return n.handle }

// Netlink is a netlink handle whose sockets live in the namespace, for
// operations this package does not wrap.
func (n *NS) Netlink() *netlink.Handle { return n.nl }

// Do runs fn on a dedicated OS thread switched into the namespace and
// returns its error. Sockets, TUN devices and netlink handles fn creates
// belong to the namespace and stay there after Do returns. Goroutines that fn
// starts do NOT run in the namespace (they run on other threads), so fn must
// create everything namespace-bound itself, synchronously. If the thread
// cannot be switched back it is discarded rather than reused.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := vns.Set(n.handle); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", n.name, err)
			return
		}
		ferr := fn()
		if err := vns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave namespace %s: %w", n.name, err))
			return // thread stays locked and dies with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Start starts cmd with the child process inside the namespace: the fork
// happens on a thread switched into it, and a child inherits its parent
// thread's network namespace. The caller waits for / kills cmd as usual and
// must do so before the test ends (e.g. with exec.CommandContext and
// t.Context()).
func (n *NS) Start(cmd *exec.Cmd) error {
	return n.Do(cmd.Start)
}

// Sysctl sets a sysctl of the namespace, e.g. Sysctl("net.ipv4.ip_forward",
// "1"). /proc/sys/net is resolved against the namespace of the opening
// thread, so the write happens inside Do.
func (n *NS) Sysctl(key, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	return n.Do(func() error {
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", key, value, n.name, err)
		}
		return nil
	})
}

// EnableForwarding turns on IPv4 and IPv6 forwarding in the namespace, which
// routers (NAT boxes, relays between links) need.
func (n *NS) EnableForwarding() error {
	if err := n.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		return err
	}
	return n.Sysctl("net.ipv6.conf.all.forwarding", "1")
}
