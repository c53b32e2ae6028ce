//go:build linux

package tun

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

const cloneDevicePath = "/dev/net/tun"

// linuxQueue is one TUN queue: its own file descriptor, wrapped in a
// wireguard-go NativeTun that does the virtio-net split (Read) and the GRO
// coalescing (Write) with per-queue buffers and tables.
//
// Concurrency: exactly one reader goroutine (readLoop) reads; writes come
// from Send callers and this queue's write worker, serialized by the
// NativeTun's own write lock.
type linuxQueue struct {
	idx  int
	t    *LinuxTun
	dev  wgtun.Device
	file *os.File
	rc   syscall.RawConn

	// free holds this queue's read batches not in use; a batch travels
	// free -> readLoop -> t.ready -> PollRecvMany -> free.
	free chan *rxBatch
	// work carries Send's groups for this queue when Send writes several
	// queues in parallel.
	work chan writeJob

	// segLimit is the number of free buffers a batch must still have for
	// readLoop to try another read into it without risking
	// ErrTooManySegments on a maximal super packet.
	segLimit int

	// State for the prebuilt RawConn callbacks (built once, so calling them
	// does not allocate a closure per read).
	pollFds    [1]unix.PollFd
	pollReady  bool
	pollFn     func(fd uintptr)
	rawBatch   *rxBatch
	rawErr     error
	rawReadFn  func(fd uintptr) bool
	bufferSize int

	rxPackets atomic.Uint64 // packets this queue's reader got
}

// rxBatch is a batch of packets read from one queue.
type rxBatch struct {
	q     *linuxQueue
	bufs  [][]byte // each bufferSize long
	sizes []int
	n     int // packets in bufs
	next  int // first packet not yet consumed
}

// ensureCloneDevice creates /dev/net/tun when a minimal container lacks it.
func ensureCloneDevice() error {
	if _, err := os.Stat(cloneDevicePath); err == nil {
		return nil
	}
	if err := os.MkdirAll("/dev/net", 0o751); err != nil {
		return fmt.Errorf("tun: create /dev/net: %w", err)
	}
	if err := unix.Mknod(cloneDevicePath, unix.S_IFCHR|0o666, int(unix.Mkdev(10, 200))); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("tun: mknod %s: %w", cloneDevicePath, err)
	}
	return nil
}

// openQueueFD opens one queue of the device name. The first queue is opened
// with IFF_TUN_EXCL so the kernel itself refuses an existing device
// (closing the race between our netlink check and the ioctl).
func openQueueFD(name string, first, multi, vnet bool) (int, error) {
	fd, err := unix.Open(cloneDevicePath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("tun: open %s: %w", cloneDevicePath, err)
	}
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if vnet {
		flags |= unix.IFF_VNET_HDR
	}
	if multi {
		flags |= unix.IFF_MULTI_QUEUE
	}
	if first {
		flags |= unix.IFF_TUN_EXCL
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("tun: %w", err)
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		if first && errors.Is(err, unix.EBUSY) {
			return -1, fmt.Errorf("%w: %q (another process may hold it)", ErrDeviceExists, name)
		}
		return -1, fmt.Errorf("tun: TUNSETIFF %q: %w", name, err)
	}
	return fd, nil
}

func newLinuxQueue(t *LinuxTun, idx, fd int) (*linuxQueue, error) {
	// CreateUnmonitoredTUNFromFD sets the fd non-blocking, hands it to the
	// runtime poller and enables TSO (and USO where the kernel has it) when
	// the fd has IFF_VNET_HDR. It starts no goroutines: gozone needs no
	// up/down events, and the monitored variant's listeners block forever
	// unless someone drains Events.
	dev, _, err := wgtun.CreateUnmonitoredTUNFromFD(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun: queue %d: %w", idx, err)
	}
	q := &linuxQueue{
		idx:  idx,
		t:    t,
		dev:  dev,
		file: dev.File(),
		free: make(chan *rxBatch, batchesPerQueue),
		work: make(chan writeJob), // unbuffered: a job is only handed over to a live worker
	}
	q.rc, err = q.file.SyscallConn()
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("tun: queue %d: %w", idx, err)
	}
	q.bufferSize = t.mtu
	// A super packet holds at most 64 KiB of payload in segments of at
	// least MTU-60 bytes (IPv4+TCP headers with options).
	q.segLimit = min(linuxBatch, 65535/max(t.mtu-60, 1)+1)
	for range batchesPerQueue {
		b := &rxBatch{q: q, bufs: make([][]byte, linuxBatch), sizes: make([]int, linuxBatch)}
		for i := range b.bufs {
			b.bufs[i] = make([]byte, q.bufferSize)
		}
		q.free <- b
	}
	q.pollFn = func(fd uintptr) {
		q.pollFds[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
		n, err := unix.Poll(q.pollFds[:], 0)
		q.pollReady = err == nil && n > 0 && q.pollFds[0].Revents&unix.POLLIN != 0
	}
	q.rawReadFn = q.rawRead
	return q, nil
}

// readable reports whether a read would not block.
func (q *linuxQueue) readable() bool {
	q.pollReady = false
	if err := q.rc.Control(q.pollFn); err != nil {
		return false
	}
	return q.pollReady
}

// readLoop is the queue's reader goroutine. It fills a free batch with as
// many packets as are waiting (at least one), then hands it to
// PollRecvMany, until the device is closed.
func (q *linuxQueue) readLoop() {
	defer q.t.readers.Done()
	t := q.t
	for {
		var b *rxBatch
		select {
		case b = <-q.free:
		case <-t.closed:
			return
		}
		b.n, b.next = 0, 0
		var err error
		if t.offloads {
			err = q.fillVirtio(b)
		} else {
			err = q.fillRaw(b)
		}
		if err != nil {
			return // closed
		}
		q.rxPackets.Add(uint64(b.n))
		select {
		case t.ready <- b:
		case <-t.closed:
			return
		}
	}
}

// fillVirtio reads through NativeTun.Read, which splits super packets,
// until b holds at least one packet and either no more data is waiting or
// b might not have room for another super packet. It returns an error only
// when the device is closed.
func (q *linuxQueue) fillVirtio(b *rxBatch) error {
	t := q.t
	failures := 0
	for {
		n, err := q.readVirtio(b)
		if err != nil {
			if q.closedErr(err) {
				return err
			}
			if isIOError(err) {
				t.stats.rxReadErrors.Add(1)
				failures++
				q.backoff(failures)
			} else {
				// Parse errors from the virtio split: the super packet
				// (or what was left of it) is dropped.
				t.stats.rxMalformed.Add(1)
			}
			if !errors.Is(err, wgtun.ErrTooManySegments) {
				n = 0
			}
		}
		if err == nil {
			failures = 0
		}
		n = max(0, min(n, len(b.bufs)-b.n))
		if n > 1 {
			t.stats.rxSuper.Add(1)
		}
		b.n += q.keepValid(b, b.n, n)
		if b.n == 0 {
			continue
		}
		if len(b.bufs)-b.n < q.segLimit || !q.readable() {
			return nil
		}
	}
}

// errSplitPanic reports a super packet whose split panicked.
var errSplitPanic = errors.New("tun: virtio split failed")

// readVirtio is one NativeTun.Read into the free part of b. wireguard-go's
// split trusts that every segment fits the buffers it is given; if the
// interface MTU was raised behind our back, segments can be larger than our
// MTU-sized buffers and the split slices past their end. That panic is
// contained here: the super packet is dropped and counted, the reader
// lives on.
func (q *linuxQueue) readVirtio(b *rxBatch) (n int, err error) {
	defer func() {
		if r := recover(); r != nil {
			n, err = 0, fmt.Errorf("%w: %v", errSplitPanic, r)
		}
	}()
	return q.dev.Read(b.bufs[b.n:], b.sizes[b.n:], 0)
}

// keepValid drops, in place, packets in b.bufs[from:from+n] whose reported
// size does not fit the buffer (the split copies silently truncated
// segments) or is empty. It returns how many remain.
func (q *linuxQueue) keepValid(b *rxBatch, from, n int) int {
	kept := 0
	for i := from; i < from+n; i++ {
		sz := b.sizes[i]
		if sz <= 0 || sz > len(b.bufs[i]) {
			q.t.stats.rxTooBig.Add(1)
			continue
		}
		if j := from + kept; j != i {
			b.bufs[i], b.bufs[j] = b.bufs[j], b.bufs[i]
			b.sizes[j] = sz
		}
		kept++
	}
	return kept
}

// fillRaw reads plain packets (no virtio header) straight from the fd,
// draining everything that is waiting into b with one poller wakeup.
func (q *linuxQueue) fillRaw(b *rxBatch) error {
	failures := 0
	for {
		q.rawBatch, q.rawErr = b, nil
		err := q.rc.Read(q.rawReadFn)
		q.rawBatch = nil
		if err == nil {
			err = q.rawErr
		}
		if err != nil {
			if q.closedErr(err) {
				return err
			}
			q.t.stats.rxReadErrors.Add(1)
			failures++
			q.backoff(failures)
		}
		if b.n > 0 {
			return nil
		}
	}
}

// rawRead is the RawConn.Read callback of fillRaw. It returns false (wait
// for readability) only when nothing has been read yet.
func (q *linuxQueue) rawRead(fd uintptr) bool {
	b := q.rawBatch
	for b.n < len(b.bufs) {
		n, err := unix.Read(int(fd), b.bufs[b.n])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return b.n > 0
		case err != nil:
			q.rawErr = err
			return true
		case n <= 0:
			q.t.stats.rxMalformed.Add(1)
			continue
		case n > len(b.bufs[b.n]):
			// With IFF_NO_PI the kernel returns the full length of a
			// packet it truncated to fit the buffer.
			q.t.stats.rxTooBig.Add(1)
			continue
		}
		b.sizes[b.n] = n
		b.n++
	}
	return true
}

// closedErr reports whether err means the queue is gone (our Close, or the
// device removed under us).
func (q *linuxQueue) closedErr(err error) bool {
	return errors.Is(err, os.ErrClosed) || errors.Is(err, unix.EBADFD) || q.t.isClosed()
}

func isIOError(err error) bool {
	var pe *os.PathError
	var se *os.SyscallError
	var errno unix.Errno
	return errors.As(err, &pe) || errors.As(err, &se) || errors.As(err, &errno)
}

// backoff sleeps a little after repeated read errors so a persistently
// failing fd does not spin a CPU; Close still ends the loop promptly.
func (q *linuxQueue) backoff(failures int) {
	if failures < 3 {
		return
	}
	select {
	case <-time.After(time.Duration(min(failures, 100)) * time.Millisecond):
	case <-q.t.closed:
	}
}
