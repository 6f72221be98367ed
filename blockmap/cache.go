package blockmap

import (
	"fmt"
	"unsafe"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/lunway/lunway/blockmap/format"
)

// Cache holds clean, decoded map pages for one or more volumes, bounded
// by bytes (ristretto, TinyLFU admission). It may refuse or drop any
// page at any time: it only ever holds copies of what the store has.
type Cache struct {
	c *ristretto.Cache[uint64, *cachedPage]
}

// cachedPage is a decoded page with its identity, checked on every hit
// because keys are 64-bit hashes.
type cachedPage struct {
	owner    [16]byte // ID of the volume that wrote it
	seq      uint64
	off      uint32
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
	c, err := ristretto.NewCache(&ristretto.Config[uint64, *cachedPage]{
		NumCounters: max(maxBytes/100, 1<<12),
		MaxCost:     maxBytes,
		BufferItems: 64,
	})
	if err != nil {
		return nil, fmt.Errorf("blockmap: cache: %w", err)
	}
	return &Cache{c: c}, nil
}

// Close releases the cache's goroutines.
func (c *Cache) Close() { c.c.Close() }

// MaxBytes is the cache's capacity.
func (c *Cache) MaxBytes() int64 { return c.c.MaxCost() }

// UsedBytes is the estimated memory the cached pages take.
func (c *Cache) UsedBytes() int64 { return c.c.MaxCost() - c.c.RemainingCost() }

func pageKey(owner [16]byte, seq uint64, off uint32) uint64 {
	// FNV-1a over the identity; collisions are caught by the identity check.
	h := uint64(14695981039346656037)
	mix := func(b byte) { h ^= uint64(b); h *= 1099511628211 }
	for _, b := range owner {
		mix(b)
	}
	for i := 0; i < 8; i++ {
		mix(byte(seq >> (8 * i)))
	}
	for i := 0; i < 4; i++ {
		mix(byte(off >> (8 * i)))
	}
	return h
}

func (c *Cache) get(owner [16]byte, seq uint64, off uint32) *cachedPage {
	p, ok := c.c.Get(pageKey(owner, seq, off))
	if !ok || p == nil || p.owner != owner || p.seq != seq || p.off != off {
		return nil
	}
	return p
}

func (c *Cache) put(p *cachedPage) {
	c.c.Set(pageKey(p.owner, p.seq, p.off), p, p.cost())
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
