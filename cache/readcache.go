package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sync"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/lunway/lunway/backend"
)

// The read cache holds clean object data (what the store has) in chunks
// of Options.ChunkBytes: chunk i of an object is bytes [i*C, (i+1)*C); the
// last chunk of an object is short (possibly empty), which is how the
// cache knows where objects end.
//
// On disk, a file of fixed slots, one chunk each, recycled by CLOCK:
//
//	read.cache:  | slot 0 | slot 1 | ... | slot n-1 |    (slot i at i*C)
//
// with the index (object, chunk) -> slot in memory only: the file is
// recreated empty at Open, since the store may have changed while the
// cache was closed. Above it, a ristretto cache in memory holds copies of
// slots, keyed by slot and the slot's version (a slot's version changes
// whenever it is reused or invalidated, so that memory copies of old
// contents are never found again).
//
// Invalidation: when the uploader changes an object in the store, every
// chunk of it goes. A reader that fetched from the store before that and
// inserts after would put stale data back; each insert therefore carries
// the invalidation epoch it started at, and is dropped when its object was
// invalidated since (a ring of recent invalidations; an insert older than
// the ring is dropped too).

const (
	readCacheName = "read.cache"
	invRing       = 4096
	slotFree      = 0
	slotWriting   = 1
	slotReady     = 2
)

type readCache struct {
	c     *Cache
	chunk int64
	f     File // nil: no read cache, reads go to the store
	mem   *ristretto.Cache[uint64, *memChunk]

	mu struct {
		sync.Mutex // never held across I/O
		slots      []slot
		index      map[string]map[int64]int32
		// sizes are the object sizes the cache knows (from a whole
		// upload), for objects with cached chunks.
		sizes map[string]int64
		// changing counts, per object, store changes in progress: its
		// chunks are not cached meanwhile. hidden counts the changes
		// that no pending log record covers (a direct put): its chunks
		// are not served either.
		changing map[string]int
		hidden   map[string]int
		hand     int
		epoch    uint64
		ring     [invRing]invalidation
	}
}

type slot struct {
	name  string
	idx   int64
	ver   uint64
	n     int32
	state uint8
	ref   bool
}

type invalidation struct {
	name  string
	epoch uint64
}

// memChunk is a slot's content in memory; identity is checked on every
// hit because keys are hashes.
type memChunk struct {
	slot int32
	ver  uint64
	data []byte
}

func newReadCache(c *Cache) (*readCache, error) {
	rc := &readCache{c: c, chunk: c.opts.ChunkBytes}
	rc.mu.index = map[string]map[int64]int32{}
	rc.mu.sizes = map[string]int64{}
	rc.mu.changing = map[string]int{}
	rc.mu.hidden = map[string]int{}
	if c.opts.ReadDiskBytes < 0 {
		return rc, nil
	}
	name := path.Join(c.opts.Dir, readCacheName)
	if err := c.fs.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cache: removing the old read cache: %w", err)
	}
	f, err := c.fs.Create(name)
	if err != nil {
		return nil, fmt.Errorf("cache: read cache: %w", err)
	}
	nslots := c.opts.ReadDiskBytes / rc.chunk
	if err := f.Truncate(nslots * rc.chunk); err != nil {
		f.Close()
		return nil, fmt.Errorf("cache: read cache: %w", err)
	}
	rc.f = f
	rc.mu.slots = make([]slot, nslots)
	if c.opts.ReadMemBytes > 0 {
		mem, err := ristretto.NewCache(&ristretto.Config[uint64, *memChunk]{
			NumCounters: max(10*c.opts.ReadMemBytes/rc.chunk, 1000),
			MaxCost:     c.opts.ReadMemBytes,
			BufferItems: 64,
			OnEvict:     func(*ristretto.Item[*memChunk]) { c.stats.memEvictions.Add(1) },
		})
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("cache: memory read cache: %w", err)
		}
		rc.mem = mem
	}
	return rc, nil
}

func (rc *readCache) lock()   { rc.mu.Lock() }
func (rc *readCache) unlock() { rc.mu.Unlock() }

func (rc *readCache) close() {
	if rc.mem != nil {
		rc.mem.Close()
	}
	if rc.f != nil {
		rc.f.Close()
	}
}

func memKey(s int32, ver uint64) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < 4; i++ {
		h ^= uint64(byte(s >> (8 * i)))
		h *= 1099511628211
	}
	for i := 0; i < 8; i++ {
		h ^= uint64(byte(ver >> (8 * i)))
		h *= 1099511628211
	}
	return h
}

// lookup returns chunk idx of name, if cached. The slice must not be
// modified.
func (rc *readCache) lookup(name string, idx int64) ([]byte, bool) {
	rc.lock()
	s, ok := rc.mu.index[name][idx]
	if !ok || rc.mu.slots[s].state != slotReady || rc.mu.hidden[name] > 0 {
		rc.unlock()
		return nil, false
	}
	sl := &rc.mu.slots[s]
	sl.ref = true
	ver, n := sl.ver, sl.n
	rc.unlock()
	if rc.mem != nil {
		if m, ok := rc.mem.Get(memKey(s, ver)); ok && m.slot == s && m.ver == ver {
			rc.c.stats.memHits.Add(1)
			return m.data, true
		}
	}
	buf := make([]byte, n)
	if _, err := rc.f.ReadAt(buf, int64(s)*rc.chunk); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return nil, false
	}
	rc.lock()
	valid := rc.mu.slots[s].ver == ver && rc.mu.slots[s].state == slotReady
	rc.unlock()
	if !valid {
		return nil, false // reused while we read it
	}
	rc.c.stats.diskHits.Add(1)
	if rc.mem != nil {
		rc.mem.Set(memKey(s, ver), &memChunk{slot: s, ver: ver, data: buf}, int64(len(buf))+64)
	}
	return buf, true
}

func (rc *readCache) cached(name string, idx int64) bool {
	rc.lock()
	defer rc.unlock()
	s, ok := rc.mu.index[name][idx]
	return ok && rc.mu.slots[s].state == slotReady && rc.mu.hidden[name] == 0
}

func (rc *readCache) epochNow() uint64 {
	rc.lock()
	defer rc.unlock()
	return rc.mu.epoch
}

// staleLocked reports whether name was invalidated after epoch.
func (rc *readCache) staleLocked(name string, epoch uint64) bool {
	if epoch == rc.mu.epoch {
		return false
	}
	if rc.mu.epoch-epoch >= invRing {
		return true // too old to tell
	}
	for e := epoch + 1; e <= rc.mu.epoch; e++ {
		if rc.mu.ring[e%invRing].name == name {
			return true
		}
	}
	return false
}

// insert caches chunk idx of name (data no longer than a chunk), fetched
// from the store when the invalidation epoch was epoch.
func (rc *readCache) insert(name string, idx int64, data []byte, epoch uint64, toMem bool) {
	if rc.f == nil {
		return
	}
	rc.lock()
	if rc.staleLocked(name, epoch) || rc.mu.changing[name] > 0 {
		rc.unlock()
		return
	}
	if s, ok := rc.mu.index[name][idx]; ok && rc.mu.slots[s].state == slotReady {
		rc.unlock()
		return
	}
	s := rc.victimLocked()
	if s < 0 {
		rc.unlock()
		return
	}
	sl := &rc.mu.slots[s]
	sl.ver++
	sl.name, sl.idx, sl.n, sl.state, sl.ref = name, idx, int32(len(data)), slotWriting, false
	ver := sl.ver
	rc.unlock()
	_, err := rc.f.WriteAt(data, int64(s)*rc.chunk)
	rc.lock()
	defer rc.unlock()
	sl = &rc.mu.slots[s]
	if sl.ver != ver {
		return // invalidated while written
	}
	if err != nil || rc.staleLocked(name, epoch) || rc.mu.changing[name] > 0 {
		sl.state, sl.name = slotFree, ""
		sl.ver++
		return
	}
	m := rc.mu.index[name]
	if m == nil {
		m = map[int64]int32{}
		rc.mu.index[name] = m
	}
	if old, ok := m[idx]; ok && old != s {
		// Another reader cached it meanwhile: keep theirs.
		sl.state, sl.name = slotFree, ""
		sl.ver++
		return
	}
	m[idx] = s
	sl.state = slotReady
	if toMem && rc.mem != nil {
		rc.mem.Set(memKey(s, ver), &memChunk{slot: s, ver: ver, data: data}, int64(len(data))+64)
	}
}

// victimLocked picks a slot to (re)use with CLOCK, or -1.
func (rc *readCache) victimLocked() int32 {
	n := len(rc.mu.slots)
	for range 2 * n {
		s := rc.mu.hand
		rc.mu.hand = (rc.mu.hand + 1) % n
		sl := &rc.mu.slots[s]
		switch {
		case sl.state == slotFree:
			return int32(s)
		case sl.state == slotWriting:
			continue
		case sl.ref:
			sl.ref = false
			continue
		}
		// Evict.
		if m := rc.mu.index[sl.name]; m != nil {
			delete(m, sl.idx)
			if len(m) == 0 {
				delete(rc.mu.index, sl.name)
				delete(rc.mu.sizes, sl.name)
			}
		}
		rc.c.stats.diskEvictions.Add(1)
		sl.state, sl.name = slotFree, ""
		return int32(s)
	}
	return -1
}

// beginChange is called before the store's object name changes, and
// endChange after: from the first to the second, chunks of name are not
// cached, and endChange drops what is cached of it (and makes reads that
// started before it retry: see read).
//
// covered tells whether pending log records cover every byte the change
// alters (the uploader applying a batch: readers see those bytes in the
// overlay until the batch is finished, after endChange). Then the chunks
// cached before the change stay valid for every byte a reader takes from
// them, and they keep being served: during an outage, the uploaded part
// of a segment that is still growing is read from the cache while its
// next upload hangs. An uncovered change (a direct put) drops the chunks
// at once and hides the object from the cache until endChange.
func (rc *readCache) beginChange(name string, covered bool) {
	rc.lock()
	defer rc.unlock()
	rc.mu.changing[name]++
	if !covered {
		rc.mu.hidden[name]++
		rc.invalidateLocked(name)
	}
}

func (rc *readCache) endChange(name string, covered bool) {
	rc.lock()
	defer rc.unlock()
	if rc.mu.changing[name]--; rc.mu.changing[name] <= 0 {
		delete(rc.mu.changing, name)
	}
	if !covered {
		if rc.mu.hidden[name]--; rc.mu.hidden[name] <= 0 {
			delete(rc.mu.hidden, name)
		}
	}
	rc.invalidateLocked(name)
}

// invalidateLocked forgets every cached chunk of name.
func (rc *readCache) invalidateLocked(name string) {
	rc.mu.epoch++
	rc.mu.ring[rc.mu.epoch%invRing] = invalidation{name: name, epoch: rc.mu.epoch}
	for _, s := range rc.mu.index[name] {
		sl := &rc.mu.slots[s]
		sl.state, sl.name = slotFree, ""
		sl.ver++
	}
	delete(rc.mu.index, name)
	delete(rc.mu.sizes, name)
}

// knownSize returns the size of the store's object name, when the cache
// knows it.
func (rc *readCache) knownSize(name string) (int64, bool) {
	rc.lock()
	defer rc.unlock()
	sz, ok := rc.mu.sizes[name]
	return sz, ok
}

// noteSizeLocked records the size of name, unless name changed since
// epoch or has no cached chunk.
func (rc *readCache) noteSizeLocked(name string, size int64, epoch uint64) {
	if rc.staleLocked(name, epoch) || len(rc.mu.index[name]) == 0 {
		return
	}
	rc.mu.sizes[name] = size
}

// fill caches an object's whole content (just uploaded), on disk only.
func (rc *readCache) fill(name string, content []byte) {
	if rc.f == nil {
		return
	}
	epoch := rc.epochNow()
	for idx := int64(0); ; idx++ {
		lo := idx * rc.chunk
		if lo > int64(len(content)) {
			return
		}
		hi := min(lo+rc.chunk, int64(len(content)))
		rc.insert(name, idx, content[lo:hi], epoch, false)
		if hi-lo < rc.chunk {
			rc.lock()
			rc.noteSizeLocked(name, int64(len(content)), epoch)
			rc.unlock()
			return
		}
	}
}

// read reads [off, off+len(p)) of the store's object name through the
// cache, with the Store's ReadAt semantics.
func (rc *readCache) read(ctx context.Context, name string, p []byte, off int64) (int, error) {
	if rc.f == nil || len(p) == 0 {
		return rc.readStore(ctx, name, p, off)
	}
	// A read assembled from several chunks must see one version of the
	// object: if it changed meanwhile, read again; after a few tries, in
	// one piece from the store.
	for try := 0; try < 3; try++ {
		epoch := rc.epochNow()
		n, err := rc.readChunks(ctx, name, p, off)
		rc.lock()
		stale := rc.staleLocked(name, epoch)
		rc.unlock()
		if !stale || err != nil && !errors.Is(err, io.EOF) {
			return n, err
		}
	}
	return rc.readStore(ctx, name, p, off)
}

// readChunks is read through the chunks.
func (rc *readCache) readChunks(ctx context.Context, name string, p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	first, last := off/rc.chunk, (end-1)/rc.chunk
	for idx := first; idx <= last; {
		if data, ok := rc.lookup(name, idx); ok {
			if n, eof := rc.place(p, off, idx, data); eof {
				return n, io.EOF
			}
			idx++
			continue
		}
		rc.c.stats.misses.Add(1)
		run := idx + 1
		for run <= last && !rc.cached(name, run) {
			run++
		}
		epoch := rc.epochNow()
		buf := make([]byte, (run-idx)*rc.chunk)
		n, err := rc.readStore(ctx, name, buf, idx*rc.chunk)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		eof := err != nil
		rc.c.stats.innerReadBytes.Add(int64(n))
		for k := idx; k < run; k++ {
			lo := (k - idx) * rc.chunk
			if lo > int64(n) || lo == int64(n) && !eof {
				break
			}
			hi := min(lo+rc.chunk, int64(n))
			rc.insert(name, k, buf[lo:hi], epoch, true)
			if got, end := rc.place(p, off, k, buf[lo:hi]); end {
				return got, io.EOF
			}
			if hi-lo < rc.chunk {
				break
			}
		}
		idx = run
	}
	return len(p), nil
}

// place copies the part of chunk idx (data) that falls in the request
// [off, off+len(p)). When the chunk is short (the object ends in it) and
// the request goes beyond, it returns the bytes read in total and true.
func (rc *readCache) place(p []byte, off, idx int64, data []byte) (int, bool) {
	lo := idx * rc.chunk
	hi := lo + int64(len(data))
	end := off + int64(len(p))
	a, b := max(lo, off), min(hi, end)
	if a < b {
		copy(p[a-off:b-off], data[a-lo:b-lo])
	}
	if int64(len(data)) < rc.chunk && hi < end {
		return int(max(0, hi-off)), true
	}
	return 0, false
}

// readStore reads from the store with the read timeout.
func (rc *readCache) readStore(ctx context.Context, name string, p []byte, off int64) (int, error) {
	var n int
	err := rc.c.readInner(ctx, "read", name, func(ctx context.Context) error {
		var err error
		n, err = rc.c.inner.ReadAt(ctx, name, p, off)
		return err
	})
	if errors.Is(err, io.EOF) {
		return n, io.EOF
	}
	if err != nil {
		if errors.Is(err, backend.ErrNotFound) {
			return 0, err
		}
		return n, err
	}
	return n, nil
}
