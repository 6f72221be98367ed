package dir

import (
	"hash/maphash"
	"os"
	"sync"
	"sync/atomic"
)

// maxHandles bounds the read-only file handles a Store keeps open.
const maxHandles = 256

// frontSlots is the size of the direct-mapped table in front of the
// cached handles (a power of two).
const frontSlots = 512

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
//
// A hit takes no lock: the cached handles are a sync.Map, changed only
// under mu (by misses, drops and evictions), and a handle is reference
// counted, the cache holding one reference while it lists it. A reader
// that finds a handle takes a reference only while the count is above
// zero, so it never revives a closed file. In front of the sync.Map sits a
// direct-mapped table of listed handles, indexed by a hash of the name: a
// hit there costs a hash and a string comparison instead of the map's
// lookup through an interface. A handle leaves its front slot (if it holds
// it) when it is unlisted, so the front never offers a handle the map no
// longer lists; a reader that loaded it just before races the drop exactly
// as one that found it in the map.
type handles struct {
	mu     sync.Mutex
	gen    uint64 // bumped by every drop
	closed bool
	m      sync.Map // name → *handle; stored and deleted under mu
	n      int      // entries in m
	// tick is bumped by every miss; a hit stamps its handle with it, so
	// that eviction finds a handle unused since the oldest miss.
	tick atomic.Uint64

	seed  maphash.Seed
	front [frontSlots]atomic.Pointer[handle]
}

type handle struct {
	f    *os.File
	name string
	refs atomic.Int64 // readers, plus one while cached; the last one out closes f
	used atomic.Uint64
}

// slot is name's slot in the front table.
func (hs *handles) slot(name string) *atomic.Pointer[handle] {
	return &hs.front[maphash.String(hs.seed, name)&(frontSlots-1)]
}

// acquire takes a reference unless the handle is already closed.
func (h *handle) acquire() bool {
	for {
		r := h.refs.Load()
		if r <= 0 {
			return false
		}
		if h.refs.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

// lookup returns a cached handle of name, or nil.
func (hs *handles) lookup(name string) *handle {
	slot := hs.slot(name)
	if h := slot.Load(); h != nil && h.name == name && h.acquire() {
		hs.touch(h)
		return h
	}
	if v, ok := hs.m.Load(name); ok {
		if h := v.(*handle); h.acquire() {
			hs.touch(h)
			if slot.Load() == nil {
				// Front it only while it is listed: an unlisted
				// handle in the front would outlive its drop.
				hs.mu.Lock()
				if v, ok := hs.m.Load(name); ok && v == h {
					slot.CompareAndSwap(nil, h)
				}
				hs.mu.Unlock()
			}
			return h
		}
	}
	return nil
}

// get returns a handle of name, opening it with open on a miss.
func (hs *handles) get(name string, open func() (*os.File, error)) (*handle, error) {
	if h := hs.lookup(name); h != nil {
		return h, nil
	}
	hs.mu.Lock()
	gen := hs.gen
	hs.mu.Unlock()
	f, err := open()
	if err != nil {
		return nil, err
	}
	h := &handle{f: f, name: name}
	h.refs.Store(1)
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.gen != gen || hs.closed {
		return h, nil // changed meanwhile, or closed: use once
	}
	if v, ok := hs.m.Load(name); ok {
		// Another reader opened it meanwhile: use theirs. (Listed
		// handles hold the cache's reference, so acquire succeeds.)
		if old := v.(*handle); old.acquire() {
			h.refs.Store(0)
			f.Close()
			return old, nil
		}
	}
	if hs.n >= maxHandles {
		hs.evictLocked()
	}
	h.used.Store(hs.tick.Add(1))
	h.refs.Add(1) // the cache's
	hs.m.Store(name, h)
	hs.n++
	hs.slot(name).Store(h)
	return h, nil
}

// touch stamps h as used since the last miss.
func (hs *handles) touch(h *handle) {
	if t := hs.tick.Load(); h.used.Load() != t {
		h.used.Store(t)
	}
}

// release ends a use of h.
func (hs *handles) release(h *handle) {
	if h.refs.Add(-1) == 0 {
		h.f.Close()
	}
}

// evictLocked uncaches the least recently used handle.
func (hs *handles) evictLocked() {
	var victim string
	var oldest *handle
	hs.m.Range(func(k, v any) bool {
		if h := v.(*handle); oldest == nil || h.used.Load() < oldest.used.Load() {
			victim, oldest = k.(string), h
		}
		return true
	})
	if oldest != nil {
		hs.uncacheLocked(victim, oldest)
	}
}

// uncacheLocked unlists h and drops the cache's reference to it.
func (hs *handles) uncacheLocked(name string, h *handle) {
	hs.slot(name).CompareAndSwap(h, nil)
	hs.m.Delete(name)
	hs.n--
	hs.release(h)
}

// drop forgets name's handle; the caller has just replaced or removed
// the file.
func (hs *handles) drop(name string) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.gen++
	if v, ok := hs.m.Load(name); ok {
		hs.uncacheLocked(name, v.(*handle))
	}
}

// closeAll closes every cached handle and caches no more.
func (hs *handles) closeAll() {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.closed = true
	hs.m.Range(func(k, v any) bool {
		hs.uncacheLocked(k.(string), v.(*handle))
		return true
	})
}
