package snownet

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// canForceBuffers reports whether SO_RCVBUFFORCE works here
// (CAP_NET_ADMIN); without it the kernel clamps to net.core.rmem_max.
func canForceBuffers() bool {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1<<20) == nil
}

// The configured buffer sizes reach StdNetBind's sockets.
func TestBindSocketBuffers(t *testing.T) {
	if !canForceBuffers() {
		if os.Getenv("CI") != "" {
			t.Fatal("needs CAP_NET_ADMIN (root) to set buffers beyond net.core.rmem_max; CI must run as root")
		}
		t.Skip("needs CAP_NET_ADMIN (root) to set buffers beyond net.core.rmem_max")
	}
	const rcv, snd = 3<<20 + 4096, 1<<20 + 4096 // distinct from StdNetBind's 7 MiB
	b := NewBind(BindConfig{RecvBufferSize: rcv, SendBufferSize: snd})
	_, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	found := 0
	forEachUDPSocket(port, func(fd int) {
		found++
		r, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
		s, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
		// The kernel doubles the requested value for bookkeeping.
		if r != 2*rcv || s != 2*snd {
			t.Errorf("fd %d: rcvbuf %d sndbuf %d, want %d and %d", fd, r, s, 2*rcv, 2*snd)
		}
	})
	if found == 0 {
		t.Fatal("no socket found on the bound port")
	}
}
