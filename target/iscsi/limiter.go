package iscsi

import (
	"net/netip"
	"sync"
	"time"
)

// failLimiter slows down repeated login failures per source address: each
// failure within failWindow doubles the delay before the failure response,
// up to 8 times the base delay. It holds at most maxEntries addresses.
type failLimiter struct {
	mu      sync.Mutex
	entries map[netip.Addr]*failEntry
}

type failEntry struct {
	fails int
	last  time.Time
}

const (
	failWindow = 5 * time.Minute
	maxEntries = 4096
)

func (l *failLimiter) init() { l.entries = make(map[netip.Addr]*failEntry) }

// fail records a failure from addr and returns how long to wait before
// answering it.
func (l *failLimiter) fail(addr netip.Addr, base time.Duration, now time.Time) time.Duration {
	if base <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entries[addr]
	if e == nil || now.Sub(e.last) > failWindow {
		if len(l.entries) >= maxEntries {
			l.evictLocked(now)
		}
		e = &failEntry{}
		l.entries[addr] = e
	}
	e.fails++
	e.last = now
	shift := min(e.fails-1, 3)
	return base << shift
}

func (l *failLimiter) evictLocked(now time.Time) {
	var oldest netip.Addr
	var oldestT time.Time
	for a, e := range l.entries {
		if now.Sub(e.last) > failWindow {
			delete(l.entries, a)
			continue
		}
		if oldestT.IsZero() || e.last.Before(oldestT) {
			oldest, oldestT = a, e.last
		}
	}
	if len(l.entries) >= maxEntries {
		delete(l.entries, oldest)
	}
}

// success forgets addr's failures.
func (l *failLimiter) success(addr netip.Addr) {
	l.mu.Lock()
	delete(l.entries, addr)
	l.mu.Unlock()
}
