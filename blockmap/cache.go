package blockmap

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"sync/atomic"
	"unsafe"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/lunway/lunway/blockmap/format"
)

// Cache holds clean, decoded map pages for one or more volumes, bounded
// by bytes (ristretto, TinyLFU admission). It may refuse or drop any
// page at any time: it only ever holds copies of what the store has.
//
// In front of ristretto sits a small direct-mapped table of pages that
// were hit at least once: a lookup there is a load and an identity check,
// where ristretto's costs a lock, a hash and a policy update (together
// about a third of a 4 KiB read from a page-cached segment). A page is
// immutable once written (its identity is where it lives), so the table
// needs no invalidation. Ristretto's evictions clear their slot, so it
// holds pages ristretto holds; a page stored into its slot by a hit that
// raced with its eviction stays until the slot is reused, so the table
// can pin at most one page per slot beyond the bound, in practice none.
// One front hit in frontTouch, chosen at random (a shared hit counter
// would bounce between cores), is also counted by ristretto, so that pages
// served from the front keep their frequency in its admission policy.
type Cache struct {
	c     *ristretto.Cache[uint64, *cachedPage]
	front []atomic.Pointer[cachedPage]
	mask  uint64
}

// frontTouch is how often, on average, a front hit is also reported to
// ristretto (a report costs about as much as the rest of the lookup).
const frontTouch = 64

// cachedPage is a decoded page with its identity, checked on every hit
// because keys are 64-bit hashes.
type cachedPage struct {
	owner    [16]byte // ID of the volume that wrote it
	seq      uint64
	off      uint32
	key      uint64 // pageKey of the identity
	leaf     *format.Leaf
	interior *format.Interior
}

// NewCache returns a page cache of about maxBytes.
func NewCache(maxBytes int64) (*Cache, error) {
	if maxBytes < 1<<20 {
		return nil, fmt.Errorf("blockmap: cache of %d bytes: at least 1 MiB", maxBytes)
	}
	// About one counter per 100 bytes of cache: pages average a few
	// hundred bytes to a few KiB, and ristretto wants ~10x the items.
	// One front slot per 4 KiB of cache, a power of two from 256 to 64 Ki
	// (8 bytes each).
	n := uint64(1) << bits.Len64(uint64(min(max(maxBytes>>12, 256), 1<<16))-1)
	cache := &Cache{front: make([]atomic.Pointer[cachedPage], n), mask: n - 1}
	c, err := ristretto.NewCache(&ristretto.Config[uint64, *cachedPage]{
		NumCounters: max(maxBytes/100, 1<<12),
		MaxCost:     maxBytes,
		BufferItems: 64,
		OnEvict: func(it *ristretto.Item[*cachedPage]) {
			if p := it.Value; p != nil {
				cache.front[p.key&cache.mask].CompareAndSwap(p, nil)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("blockmap: cache: %w", err)
	}
	cache.c = c
	return cache, nil
}

// Close releases the cache's goroutines.
func (c *Cache) Close() { c.c.Close() }

// MaxBytes is the cache's capacity.
func (c *Cache) MaxBytes() int64 { return c.c.MaxCost() }

// UsedBytes is the estimated memory the cached pages take.
func (c *Cache) UsedBytes() int64 { return c.c.MaxCost() - c.c.RemainingCost() }

func pageKey(owner [16]byte, seq uint64, off uint32) uint64 {
	// Mixes the identity's words (a splitmix64 finalizer on each step);
	// collisions are caught by the identity check.
	mix := func(h, w uint64) uint64 {
		h ^= w
		h ^= h >> 30
		h *= 0xbf58476d1ce4e5b9
		h ^= h >> 27
		h *= 0x94d049bb133111eb
		return h ^ h>>31
	}
	h := mix(0x9e3779b97f4a7c15, le64(owner[:8]))
	h = mix(h, le64(owner[8:]))
	h = mix(h, seq)
	return mix(h, uint64(off))
}

func le64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

func (p *cachedPage) is(owner [16]byte, seq uint64, off uint32) bool {
	return p.owner == owner && p.seq == seq && p.off == off
}

func (c *Cache) get(owner [16]byte, seq uint64, off uint32) *cachedPage {
	key := pageKey(owner, seq, off)
	slot := &c.front[key&c.mask]
	if p := slot.Load(); p != nil && p.key == key && p.is(owner, seq, off) {
		if rand.Uint32()%frontTouch == 0 {
			c.c.Get(key) // keep its frequency in ristretto's policy
		}
		return p
	}
	p, ok := c.c.Get(key)
	if !ok || p == nil || !p.is(owner, seq, off) {
		return nil
	}
	slot.Store(p)
	return p
}

func (c *Cache) put(p *cachedPage) {
	p.key = pageKey(p.owner, p.seq, p.off)
	c.c.Set(p.key, p, p.cost())
}

// cost estimates the memory a decoded page takes.
func (p *cachedPage) cost() int64 {
	n := int64(unsafe.Sizeof(*p)) + 64
	if p.leaf != nil {
		n += int64(unsafe.Sizeof(*p.leaf)) + int64(cap(p.leaf.Extents))*int64(unsafe.Sizeof(format.LeafExtent{}))
	}
	if p.interior != nil {
		n += int64(unsafe.Sizeof(*p.interior)) + int64(cap(p.interior.Children))*int64(unsafe.Sizeof(format.Child{}))
	}
	return n
}
