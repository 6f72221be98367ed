package file

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// gate lets plain writes run without a lock while keeping them out of the
// way of CompareAndWrite (which must see no write land between its compare
// and its write) and Resize (which must see no write at all).
//
//	plain write:  inflight++ ; slow == 0 ? write ; inflight--
//	                           slow  > 0 ? inflight-- ; range lock ; write ; unlock
//	CAW / Resize: slow++ ; wait for inflight == 0 ; range lock (Resize: all) ; ... ; slow--
//
// Both sides touch their own counter first and read the other's second
// (sequentially consistent atomics), so either the write sees slow > 0 and
// takes the range lock, or the CAW sees the write in flight and waits for
// it: a write never slips past a CAW unseen.
type gate struct {
	inflight atomic.Int64 // writes on the fast path
	slow     atomic.Int64 // CAWs and Resizes in progress

	mu struct {
		sync.Mutex
		cond      *sync.Cond
		held      []span
		exclusive bool
	}
}

type span struct{ off, end int64 }

func (s span) overlaps(o span) bool { return s.off < o.end && o.off < s.end }

// write runs fn, a write of [off, off+n).
func (g *gate) write(off, n int64, fn func() error) error {
	g.inflight.Add(1)
	if g.slow.Load() == 0 {
		defer g.inflight.Add(-1)
		return fn()
	}
	g.inflight.Add(-1)
	g.lock(off, n)
	defer g.unlock(off, n)
	return fn()
}

// enterSlow sends later writes to the range lock and waits for those on the
// fast path to finish. exitSlow undoes it.
func (g *gate) enterSlow() {
	g.slow.Add(1)
	for i := 0; g.inflight.Load() != 0; i++ {
		if i < 64 {
			runtime.Gosched()
		} else {
			time.Sleep(20 * time.Microsecond)
		}
	}
}

func (g *gate) exitSlow() { g.slow.Add(-1) }

func (g *gate) condLocked() *sync.Cond {
	if g.mu.cond == nil {
		g.mu.cond = sync.NewCond(&g.mu.Mutex)
	}
	return g.mu.cond
}

// lock holds [off, off+n) against other holders.
func (g *gate) lock(off, n int64) {
	s := span{off, off + n}
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.mu.exclusive || g.overlapsLocked(s) {
		g.condLocked().Wait()
	}
	g.mu.held = append(g.mu.held, s)
}

func (g *gate) overlapsLocked(s span) bool {
	for _, h := range g.mu.held {
		if h.overlaps(s) {
			return true
		}
	}
	return false
}

func (g *gate) unlock(off, n int64) {
	s := span{off, off + n}
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, h := range g.mu.held {
		if h == s {
			g.mu.held = append(g.mu.held[:i], g.mu.held[i+1:]...)
			break
		}
	}
	g.condLocked().Broadcast()
}

// lockAll holds the whole device against every holder.
func (g *gate) lockAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.mu.exclusive || len(g.mu.held) > 0 {
		g.condLocked().Wait()
	}
	g.mu.exclusive = true
}

func (g *gate) unlockAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.mu.exclusive = false
	g.condLocked().Broadcast()
}
