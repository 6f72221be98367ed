package blockmap

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/lunway/lunway/blockmap/format"
)

// TestCacheFront checks the front table of the page cache: a hit returns
// the page with the asked identity or nothing, whatever shares its slot,
// and the table never keeps a page ristretto has evicted.
func TestCacheFront(t *testing.T) {
	c, err := NewCache(1 << 20) // 256 front slots
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	owner := [16]byte{1, 2, 3}
	const pages = 20000 // far more than fit: ristretto evicts and rejects
	mk := func(i int) *cachedPage {
		return &cachedPage{owner: owner, seq: uint64(i / 7), off: uint32(i%7) * 4096,
			leaf: &format.Leaf{Extents: make([]format.LeafExtent, 8)}}
	}
	hits := 0
	for round := 0; round < 3; round++ {
		for i := range pages {
			p := mk(i)
			if got := c.get(p.owner, p.seq, p.off); got != nil {
				hits++
				if !got.is(p.owner, p.seq, p.off) {
					t.Fatalf("get(%d) returned page %d/%d", i, got.seq, got.off)
				}
				c.get(p.owner, p.seq, p.off) // a second hit, from the front
				continue
			}
			c.put(p)
			c.c.Wait()
		}
	}
	// (The churn may hit nothing: 20000 pages cycled through a cache of
	// a few thousand can all be evicted before their next turn.)
	// Every page in the front is one ristretto still holds. (Churn may
	// have emptied the front entirely; without the eviction hook it
	// would instead hold pages ristretto dropped.)
	check := func() int {
		inFront := 0
		for i := range c.front {
			p := c.front[i].Load()
			if p == nil {
				continue
			}
			inFront++
			if q, ok := c.c.Get(p.key); !ok || q != p {
				t.Errorf("front slot %d holds page %d/%d, which ristretto evicted", i, p.seq, p.off)
			}
		}
		return inFront
	}
	afterChurn := check()
	// A hit on a page ristretto holds puts it in the front.
	filled := 0
	for i := 0; i < pages && filled < 16; i++ {
		p := mk(i)
		if _, ok := c.c.Get(pageKey(p.owner, p.seq, p.off)); !ok {
			continue
		}
		if got := c.get(p.owner, p.seq, p.off); got == nil || !got.is(p.owner, p.seq, p.off) {
			t.Fatalf("get(%d) missed a page ristretto holds", i)
		}
		filled++
	}
	if filled == 0 {
		t.Fatal("ristretto holds none of the pages")
	}
	if check() == 0 {
		t.Fatal("the front table stayed empty after hits")
	}
	t.Logf("%d hits, %d pages in the front after churn, %d bytes cached", hits, afterChurn, c.UsedBytes())
}

// TestLeafMemo checks the leaf memo of the read path: it keeps decoded
// leaves within its byte budget (and accounts for them exactly), a read
// it serves needs no page from the cache or the store, and a new tree
// (after a checkpoint) is never answered from an older tree's leaves.
func TestLeafMemo(t *testing.T) {
	ctx := context.Background()
	opts := testOptions()
	opts.CacheBytes = 1 << 20 // memo budget 64 KiB
	v := newVolume(t, memStore(t, false), "memo", 512<<20, opts)
	if v.memoBudget != 64<<10 {
		t.Fatalf("memo budget %d, want 64 KiB (1/16 of the cache)", v.memoBudget)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	model := map[int64]byte{}
	blk := make([]byte, 4096)
	write := func(n int) {
		for range n {
			off := rng.Int64N(512<<20/4096) * 4096
			b := byte(rng.Uint32()) | 1
			for i := range blk {
				blk[i] = b
			}
			if err := v.WriteAt(ctx, blk, off, 0); err != nil {
				t.Fatal(err)
			}
			model[off] = b
		}
		if err := v.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	readAll := func() {
		t.Helper()
		for off, b := range model {
			if err := v.ReadAt(ctx, blk, off); err != nil {
				t.Fatal(err)
			}
			if blk[0] != b || blk[4095] != b {
				t.Fatalf("block at %d reads %#x, want %#x", off, blk[0], b)
			}
		}
	}
	held := func() (n int, bytes int64) {
		for i := range v.leafMemo {
			if m := v.leafMemo[i].Load(); m != nil && m.page != nil {
				n++
				bytes += m.cost
			}
		}
		return n, bytes
	}
	write(3000) // about 1000 leaves, far more than the budget holds
	readAll()
	n, bytes := held()
	if n == 0 || bytes != v.memoBytes.Load() || bytes > v.memoBudget {
		t.Fatalf("memo holds %d leaves, %d bytes; charged %d, budget %d", n, bytes, v.memoBytes.Load(), v.memoBudget)
	}
	// Overwrite everything: every leaf changes, and reads must see the new
	// tree's leaves, not the memo's.
	for off := range model {
		model[off] ^= 0xfe
		for i := range blk {
			blk[i] = model[off]
		}
		if err := v.WriteAt(ctx, blk, off, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	readAll()
	if _, bytes := held(); bytes != v.memoBytes.Load() || bytes > v.memoBudget {
		t.Fatalf("after the new tree: memo holds %d bytes, charged %d, budget %d", bytes, v.memoBytes.Load(), v.memoBudget)
	}
	// A leaf the memo holds is used even when the cache has lost it: a
	// read then makes one store read (the data), not two.
	var off int64 = -1
	for o := range model {
		idx := uint64(o/int64(v.bs)) >> v.leafShift
		if m := v.leafMemo[idx%uint64(len(v.leafMemo))].Load(); m != nil && m.idx == idx && m.page != nil {
			off = o
			break
		}
	}
	if off < 0 {
		t.Fatal("no block whose leaf the memo holds")
	}
	v.cache.c.Clear()
	for i := range v.cache.front {
		v.cache.front[i].Store(nil)
	}
	before := v.Stats().BackendReadOps
	if err := v.ReadAt(ctx, blk, off); err != nil || blk[0] != model[off] {
		t.Fatalf("read at %d: %v, %#x, want %#x", off, err, blk[0], model[off])
	}
	if got := v.Stats().BackendReadOps - before; got != 1 {
		t.Errorf("a read whose leaf the memo holds made %d store reads, want 1", got)
	}
}
