package snownet

import (
	"os"
	"strconv"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// setSocketBuffers sets SO_RCVBUF/SO_SNDBUF (and the FORCE variants, which
// need CAP_NET_ADMIN and may fail) on this process's UDP sockets bound to
// port. StdNetBind fixes its own buffers at 7 MiB and exposes neither its
// sockets nor a hook, so the sockets are found by scanning our own file
// descriptors for UDP sockets bound to the port it just opened. Sizes <= 0
// leave the value alone. Failures only cost performance and are logged.
func setSocketBuffers(port uint16, rcv, snd int, log *zap.Logger) {
	if port == 0 || (rcv <= 0 && snd <= 0) {
		return
	}
	forEachUDPSocket(port, func(fd int) {
		if rcv > 0 {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcv)
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcv)
		}
		if snd > 0 {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, snd)
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, snd)
		}
		got, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
		log.Debug("socket buffers set", zap.Int("fd", fd), zap.Int("rcvbuf_effective", got))
	})
}

// forEachUDPSocket calls fn for each of this process's UDP sockets bound
// to port.
func forEachUDPSocket(port uint16, fn func(fd int)) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return
	}
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_DGRAM {
			continue
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			continue
		}
		var p int
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			p = a.Port
		case *unix.SockaddrInet6:
			p = a.Port
		default:
			continue
		}
		if p == int(port) {
			fn(fd)
		}
	}
}
