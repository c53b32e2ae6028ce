package linuxnet

import (
	"fmt"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NetworkWatcher reports network changes the client must react to by
// resetting its tunnel (reference §2.7): an address added to or removed
// from another interface, or a default route that changed. Changes on the
// tunnel interface itself (the client's own addresses and routes) are
// ignored. Bursts are coalesced: one notification after Debounce of quiet.
//
// It works in the network namespace of the thread that calls
// WatchNetwork. Close stops it; C is then never sent on again.
type NetworkWatcher struct {
	C <-chan struct{}

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// WatchNetwork starts watching; ignoreIface names the tunnel interface,
// which must exist already ("" ignores nothing). debounce 0 means 500 ms.
func WatchNetwork(ignoreIface string, debounce time.Duration) (*NetworkWatcher, error) {
	if debounce <= 0 {
		debounce = 500 * time.Millisecond
	}
	// The index is looked up now, in the caller's namespace: the watcher's
	// goroutine may run on any thread.
	ignoreIndex := -1
	if ignoreIface != "" {
		l, err := netlink.LinkByName(ignoreIface)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrNoLink, ignoreIface, err)
		}
		ignoreIndex = l.Attrs().Index
	}
	done := make(chan struct{})
	addrs := make(chan netlink.AddrUpdate, 64)
	routes := make(chan netlink.RouteUpdate, 64)
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{}); err != nil {
		close(done)
		return nil, fmt.Errorf("watching addresses: %w", err)
	}
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{}); err != nil {
		close(done)
		return nil, fmt.Errorf("watching routes: %w", err)
	}
	c := make(chan struct{}, 1)
	w := &NetworkWatcher{C: c, done: done}
	ignored := func(index int) bool { return index == ignoreIndex }
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		var timer *time.Timer
		var fire <-chan time.Time
		for {
			changed := false
			select {
			case <-done:
				if timer != nil {
					timer.Stop()
				}
				return
			case u, ok := <-addrs:
				if !ok {
					return
				}
				changed = !ignored(u.LinkIndex) && !u.LinkAddress.IP.IsLinkLocalUnicast()
			case u, ok := <-routes:
				if !ok {
					return
				}
				isDefault := u.Dst == nil || (u.Dst.IP.IsUnspecified() && func() bool { o, _ := u.Dst.Mask.Size(); return o == 0 }())
				changed = isDefault && u.Table == unix.RT_TABLE_MAIN && !ignored(u.LinkIndex)
			case <-fire:
				fire = nil
				select {
				case c <- struct{}{}:
				default:
				}
			}
			if changed {
				if timer == nil {
					timer = time.NewTimer(debounce)
				} else {
					timer.Reset(debounce)
				}
				fire = timer.C
			}
		}
	}()
	return w, nil
}

// Close stops the watcher. Idempotent.
func (w *NetworkWatcher) Close() {
	w.closeOnce.Do(func() { close(w.done) })
	w.wg.Wait()
}
