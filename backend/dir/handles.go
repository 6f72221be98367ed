package dir

import (
	"os"
	"sync"
)

// maxHandles bounds the read-only file handles a Store keeps open.
const maxHandles = 256

// handles keeps read-only handles of recently read objects, so that a
// read is one pread instead of open, pread and close (the open, with its
// path walk and poller registration, cost more than the read itself).
//
// A handle reads the inode it was opened on. Put replaces an object by
// rename and Delete unlinks it, so both drop the object's handle after
// changing the file, and bump gen: a handle opened before a change and
// offered to the cache after it is used once and closed, never cached.
// WriteAt changes the file in place (the same inode), which every handle
// sees.
type handles struct {
	mu   sync.Mutex
	gen  uint64 // bumped by every drop
	tick uint64
	m    map[string]*handle
}

type handle struct {
	f      *os.File
	refs   int
	used   uint64
	cached bool // in m; when false, the last release closes f
}

// get returns a handle of name, opening it with open on a miss.
func (hs *handles) get(name string, open func() (*os.File, error)) (*handle, error) {
	hs.mu.Lock()
	if h, ok := hs.m[name]; ok {
		h.refs++
		hs.tick++
		h.used = hs.tick
		hs.mu.Unlock()
		return h, nil
	}
	gen := hs.gen
	hs.mu.Unlock()
	f, err := open()
	if err != nil {
		return nil, err
	}
	h := &handle{f: f, refs: 1}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.gen != gen || hs.m == nil {
		return h, nil // changed meanwhile, or closed: use once
	}
	if old, ok := hs.m[name]; ok {
		// Another reader opened it meanwhile: use theirs.
		old.refs++
		h.refs = 0
		f.Close()
		return old, nil
	}
	if len(hs.m) >= maxHandles {
		hs.evictLocked()
	}
	hs.tick++
	h.used, h.cached = hs.tick, true
	hs.m[name] = h
	return h, nil
}

// release ends a use of h.
func (hs *handles) release(h *handle) {
	hs.mu.Lock()
	h.refs--
	closeIt := h.refs == 0 && !h.cached
	hs.mu.Unlock()
	if closeIt {
		h.f.Close()
	}
}

// evictLocked uncaches the least recently used handle.
func (hs *handles) evictLocked() {
	var victim string
	var oldest *handle
	for name, h := range hs.m {
		if oldest == nil || h.used < oldest.used {
			victim, oldest = name, h
		}
	}
	if oldest != nil {
		hs.uncacheLocked(victim, oldest)
	}
}

func (hs *handles) uncacheLocked(name string, h *handle) {
	delete(hs.m, name)
	h.cached = false
	if h.refs == 0 {
		h.f.Close()
	}
}

// drop forgets name's handle; the caller has just replaced or removed
// the file.
func (hs *handles) drop(name string) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.gen++
	if h, ok := hs.m[name]; ok {
		hs.uncacheLocked(name, h)
	}
}

// closeAll closes every cached handle and caches no more.
func (hs *handles) closeAll() {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for name, h := range hs.m {
		hs.uncacheLocked(name, h)
	}
	hs.m = nil
}
