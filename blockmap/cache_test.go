package blockmap

import (
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
