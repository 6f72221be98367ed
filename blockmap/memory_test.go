package blockmap

import (
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"testing"

	"github.com/lunway/lunway/backend/dir"
)

// TestMemoryBound1TiB writes random 4 KiB blocks across a 1 TiB volume
// with small memory bounds, so that the map outgrows the page cache, and
// checks that the heap stays bounded by the configured sizes rather than
// growing with the map. LUNWAY_MEM_WRITES sets the number of writes
// (default 40000; -short 10000); the long run used for the README is
//
//	LUNWAY_MEM_WRITES=1000000 go test -run TestMemoryBound1TiB -v ./blockmap/
func TestMemoryBound1TiB(t *testing.T) {
	writes := 40000
	if testing.Short() || raceEnabled {
		writes = 10000
	}
	if s := os.Getenv("LUNWAY_MEM_WRITES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		writes = n
	}
	ctx := t.Context()
	store, err := dir.Open(ctx, t.TempDir(), &dir.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	const (
		size      = 1 << 40
		cacheSize = 1 << 20
		dirty     = 8 << 20
		deltaMax  = 32 << 10
	)
	opts := &Options{
		LogicalBlockSize:  4096,
		SegmentSize:       1 << 20,
		CacheBytes:        cacheSize,
		MaxDirtyBytes:     dirty,
		MaxDeltaExtents:   deltaMax,
		DisableBackground: true,
	}
	v := newVolume(t, store, "big", size, opts)
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base := heap()
	rng := rand.New(rand.NewPCG(1, 1))
	buf := make([]byte, 4096)
	blocks := int64(size / 4096)
	offs := make([]int64, 0, 64)
	var half uint64
	for i := 0; i < writes; i++ {
		off := rng.Int64N(blocks) * 4096
		buf[0], buf[1], buf[2] = byte(i), byte(i>>8), byte(i>>16)
		if err := v.WriteAt(ctx, buf, off, 0); err != nil {
			t.Fatal(err)
		}
		if i%(writes/64+1) == 0 {
			offs = append(offs, off)
		}
		if i == writes/2 {
			half = heap()
		}
	}
	if err := v.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	end := heap()
	st := v.Stats()
	// The map on the store: every leaf touched holds a page.
	var pageBytes int64
	for _, s := range v.mu.segs {
		if s.kind == 3 {
			pageBytes += s.live
		}
	}
	t.Logf("%d random 4 KiB writes over 1 TiB: heap +%.1f MiB at half, +%.1f MiB at the end (cache %d MiB, dirty %d MiB, delta %d extents); "+
		"%d segments, estimate %.1f MiB, map pages on the store ~%.1f MiB, write amplification %.2f",
		writes, mib(half-base), mib(end-base), cacheSize>>20, dirty>>20, deltaMax, st.Segments, mib(uint64(st.MemoryEstimate)), mib(uint64(pageBytes)), st.WriteAmplification)
	if writes < 1000 {
		t.Fatalf("LUNWAY_MEM_WRITES=%d: too few writes to mean anything", writes)
	}
	// Bound: cache + dirty data + two deltas (~100 B per extent) + the
	// segment table (~100 B per segment) + slack for the runtime.
	bound := uint64(cacheSize+dirty) + 2*deltaMax*100 + uint64(st.Segments)*100 + 16<<20
	if end-base > bound && end > base {
		t.Fatalf("heap grew by %.1f MiB, bound %.1f MiB", mib(end-base), mib(bound))
	}
	// The decoded map (pages decode to about twice their size) must not
	// fit the cache, or the test would prove nothing about paging.
	if 2*pageBytes <= cacheSize {
		t.Fatalf("the map (%d bytes of pages) fits the %d-byte cache: write more", pageBytes, cacheSize)
	}
	if used := v.cache.UsedBytes(); used > cacheSize {
		t.Fatalf("cache holds %d bytes, bound %d", used, cacheSize)
	}
	// Spot-check data through the paged map, from a cold cache.
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	v, err = Open(ctx, store, "big", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	got := make([]byte, 4096)
	for _, off := range offs {
		if err := v.ReadAt(ctx, got, off); err != nil {
			t.Fatal(err)
		}
	}
	if v.Stats().CacheMisses == 0 {
		t.Fatalf("reads from a cold cache did not load pages")
	}
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }
