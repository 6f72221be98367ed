package cachetest_test

// Tests of blockmap volumes over caches: the Device conformance suite, a
// model test with crashes, and crashes at every upload. They live here,
// in a helper package's tests, so that package cache never imports the
// block map above it.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/fault"
	"github.com/lunway/lunway/backend/mem"
	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/blockdevtest"
	"github.com/lunway/lunway/blockmap"
	"github.com/lunway/lunway/cache"
	"github.com/lunway/lunway/cache/cachetest"
)

func cacheOptions(fs cache.FS) *cache.Options {
	return &cache.Options{
		Dir:           "/c",
		FS:            fs,
		LogBytes:      16 << 20,
		LogFileBytes:  512 << 10,
		ReadDiskBytes: 1 << 20,
		ReadMemBytes:  1 << 20,
		ChunkBytes:    16 << 10,
		ReadTimeout:   5 * time.Second,
		FullWait:      5 * time.Second,
		UploadHold:    5 * time.Millisecond,
		RetryMinDelay: time.Millisecond,
		RetryMaxDelay: 10 * time.Millisecond,
	}
}

func volumeOptions() *blockmap.Options {
	return &blockmap.Options{
		SegmentSize:       128 << 10,
		CacheBytes:        4 << 20,
		MaxDirtyBytes:     1 << 20,
		MaxDeltaExtents:   4096,
		DisableBackground: true,
	}
}

// stack is a volume over a cache over a fault-injecting in-memory store
// without Overwriter (like S3), on a crash-simulating file system.
type stack struct {
	fs    *cachetest.CrashFS
	inner fault.Store
	c     *cache.Cache
	v     *blockmap.Volume
	name  string

	// gate, when closed by freeze, blocks every store mutation.
	gateMu  sync.Mutex
	gate    chan struct{}
	blocked atomic.Int32
}

func newStack(t testing.TB, fs *cachetest.CrashFS, inner fault.Store, name string, size int64) *stack {
	t.Helper()
	s := &stack{fs: fs, inner: inner, name: name}
	inner.AddRule(fault.Rule{Match: fault.Mutations(), Action: fault.Call(func(fault.Op) { s.pass() })})
	var err error
	if s.c, err = cache.Open(context.Background(), inner, cacheOptions(fs)); err != nil {
		t.Fatalf("cache.Open: %v", err)
	}
	if size > 0 {
		s.v, err = blockmap.Create(context.Background(), s.c, name, size, volumeOptions())
	} else {
		s.v, err = blockmap.Open(context.Background(), s.c, name, volumeOptions())
	}
	if err != nil {
		s.c.Close()
		t.Fatalf("open volume: %v", err)
	}
	return s
}

// pass runs in the uploader before each store mutation: it waits while
// the stack is frozen.
func (s *stack) pass() {
	s.gateMu.Lock()
	g := s.gate
	s.gateMu.Unlock()
	if g != nil {
		s.blocked.Add(1)
		<-g
		s.blocked.Add(-1)
	}
}

// crash freezes the stack's uploads and returns what a crash (mode) would
// leave: a file system and a store, consistent with each other. The stack
// is unusable afterwards (release lets it finish closing).
func (s *stack) crash(t testing.TB, mode cachetest.Mode, seed uint64) (*cachetest.CrashFS, backend.Store, func()) {
	t.Helper()
	g := make(chan struct{})
	s.gateMu.Lock()
	s.gate = g
	s.gateMu.Unlock()
	// The uploader either reaches the gate or has nothing to upload.
	deadline := time.Now().Add(30 * time.Second)
	for s.blocked.Load() == 0 && s.c.Stats().PendingRecords > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the uploader never reached the gate")
		}
		time.Sleep(time.Millisecond)
	}
	ic, err := s.inner.CrashClone(fault.CrashOptions{InFlight: fault.LoseInFlight})
	if err != nil {
		t.Fatal(err)
	}
	fc := s.fs.Crash(mode, seed)
	return fc, ic, func() {
		close(g)
		s.v.Close()
		s.c.Close()
		s.inner.Close()
	}
}

func (s *stack) close(t testing.TB) {
	t.Helper()
	if err := s.v.Close(); err != nil && !errors.Is(err, blockdev.ErrClosed) {
		t.Errorf("volume Close: %v", err)
	}
	if err := s.c.Close(); err != nil && !errors.Is(err, backend.ErrClosed) {
		t.Errorf("cache Close: %v", err)
	}
}

func checkVolume(t testing.TB, v *blockmap.Volume) {
	t.Helper()
	rep, err := v.Check(context.Background())
	if err != nil {
		t.Fatalf("Check: %v\nproblems: %q", err, rep.Problems)
	}
}

// TestVolumeConformance runs the Device suite on volumes over caches,
// reopening after a clean close and after a crash of the local disk and
// the store together.
func TestVolumeConformance(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) {
			var n atomic.Int64
			stacks := map[blockdev.Device]*stack{}
			var mu sync.Mutex
			open := func(t *testing.T, size int64) blockdev.Device {
				inner := fault.New(mem.New(&mem.Options{DisableOverwriter: true}))
				s := newStack(t, cachetest.NewCrashFS(), inner, fmt.Sprintf("v%d", n.Add(1)), size)
				mu.Lock()
				stacks[s.v] = s
				mu.Unlock()
				t.Cleanup(func() {
					s.close(t)
					inner.Close()
				})
				return s.v
			}
			reopen := func(t *testing.T, d blockdev.Device) blockdev.Device {
				mu.Lock()
				s := stacks[d]
				mu.Unlock()
				var fs *cachetest.CrashFS
				var inner fault.Store
				if crash {
					fc, ic, release := s.crash(t, cachetest.PowerLoss, 1)
					release()
					fs, inner = fc, fault.New(ic)
				} else {
					s.close(t)
					fs, inner = s.fs, fault.New(s.inner.Inner())
				}
				s2 := newStack(t, fs, inner, s.name, 0)
				mu.Lock()
				stacks[s2.v] = s2
				mu.Unlock()
				t.Cleanup(func() { s2.close(t) })
				return s2.v
			}
			blockdevtest.Run(t, open, &blockdevtest.Options{
				SizeBytes: 2 << 20,
				Reopen:    reopen,
				ExactCaps: true,
				Caps: blockdevtest.CapUnmap | blockdevtest.CapWriteZeroes | blockdevtest.CapAllocationStatus |
					blockdevtest.CapResize | blockdevtest.CapCompareAndWrite | blockdevtest.CapCopyRange | blockdevtest.CapHealth,
			})
		})
	}
}

// stamp fills p (a multiple of 512 bytes) with sectors that name the
// write: the write's id and the sector's LBA, then a pattern of both.
func stamp(p []byte, id uint64, lba int64) {
	for s := 0; s < len(p)/512; s++ {
		sec := p[s*512 : (s+1)*512]
		binary.LittleEndian.PutUint64(sec[0:], id)
		binary.LittleEndian.PutUint64(sec[8:], uint64(lba+int64(s)))
		x := id*2654435761 + uint64(lba+int64(s))
		for i := 16; i < 512; i++ {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			sec[i] = byte(x)
		}
	}
}

// sectorID returns the write id a sector holds, or an error if it is
// torn or misplaced. Zero sectors (never written) are id 0.
func sectorID(sec []byte, lba int64) (uint64, error) {
	id := binary.LittleEndian.Uint64(sec[0:])
	if id == 0 {
		for _, c := range sec {
			if c != 0 {
				return 0, fmt.Errorf("sector %d: id 0 but not zero", lba)
			}
		}
		return 0, nil
	}
	want := make([]byte, 512)
	stamp(want, id, lba)
	if string(want) != string(sec) {
		return 0, fmt.Errorf("sector %d: torn or misplaced content of write %d", lba, id)
	}
	return id, nil
}

// model tracks, per sector, every write id issued to it (hist, starting
// with 0 for "never written") and which of them the last completed Flush
// made durable.
type model struct {
	mu      sync.Mutex
	hist    [][]uint64
	flushed []int // index into hist
}

func newModel(sectors int) *model {
	m := &model{hist: make([][]uint64, sectors), flushed: make([]int, sectors)}
	for i := range m.hist {
		m.hist[i] = []uint64{0}
	}
	return m
}

func (m *model) wrote(lba, n int64, id uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for s := lba; s < lba+n; s++ {
		m.hist[s] = append(m.hist[s], id)
	}
}

func (m *model) flushedAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for s := range m.hist {
		m.flushed[s] = len(m.hist[s]) - 1
	}
}

// cut is what a crash must preserve: for each sector, the write durable
// at the last Flush completed before the crash (lo) or one issued after
// it, up to the crash (hi).
type cut struct {
	m      *model
	lo, hi []int
}

// beginCut and endCut bracket a crash that happens between them (the
// workload may go on meanwhile).
func (m *model) beginCut() *cut {
	m.mu.Lock()
	defer m.mu.Unlock()
	return &cut{m: m, lo: append([]int(nil), m.flushed...)}
}

func (c *cut) end() *cut {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	c.hi = make([]int, len(c.m.hist))
	for s := range c.m.hist {
		c.hi[s] = len(c.m.hist[s])
	}
	return c
}

func (m *model) snapshot() *cut { return m.beginCut().end() }

// verify reads the whole device and checks every sector: the flushed
// write or one written after it, never torn.
func (c *cut) verify(t testing.TB, d blockdev.Device) {
	t.Helper()
	buf := make([]byte, 64<<10)
	size := int64(len(c.lo)) * 512
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	for off := int64(0); off < size; off += int64(len(buf)) {
		if err := d.ReadAt(context.Background(), buf, off); err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		for s := 0; s < len(buf)/512; s++ {
			lba := off/512 + int64(s)
			id, err := sectorID(buf[s*512:(s+1)*512], lba)
			if err != nil {
				t.Fatal(err)
			}
			allowed := c.m.hist[lba][c.lo[lba]:c.hi[lba]]
			if !slices.Contains(allowed, id) {
				t.Fatalf("sector %d holds write %d; allowed %v (of %v)", lba, id, allowed, c.m.hist[lba])
			}
		}
	}
}

// run does n random writes (FUA now and then) and flushes on d.
func (m *model) run(t testing.TB, d blockdev.Device, rng *rand.Rand, nextID *uint64, n int) error {
	ctx := context.Background()
	sectors := int64(len(m.flushed))
	for i := 0; i < n; i++ {
		switch k := rng.IntN(10); {
		case k < 8:
			l := int64(1+rng.IntN(64)) * 8 // 4 KiB..256 KiB in 4 KiB blocks
			lba := rng.Int64N(sectors/8-l/8+1) * 8
			*nextID++
			id := *nextID
			p := make([]byte, l*512)
			stamp(p, id, lba)
			flags := blockdev.WriteFlags(0)
			if rng.IntN(8) == 0 {
				flags = blockdev.FUA
			}
			// Recorded before it is issued: from now on a crash may or may
			// not keep it. (FUA makes it durable, but the model only counts
			// on Flush.)
			m.wrote(lba, l, id)
			if err := d.WriteAt(ctx, p, lba*512, flags); err != nil {
				return fmt.Errorf("write %d: %w", id, err)
			}
		default:
			if err := d.Flush(ctx); err != nil {
				return fmt.Errorf("flush: %w", err)
			}
			m.flushedAll()
		}
	}
	return nil
}

// TestVolumeModel writes random patterns with flushes through a volume
// over a cache while the store fails now and then, crashes (power loss,
// torn) and reopens several times, and checks after each crash that
// every flushed write is there and nothing is torn, and that Check passes.
func TestVolumeModel(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	size := int64(8 << 20)
	if raceEnabled {
		size = 4 << 20
	}
	inner := fault.New(mem.New(&mem.Options{DisableOverwriter: true}))
	inner.AddRule(fault.Rule{Match: fault.And(fault.Mutations(), fault.Probability(0.2, seed)),
		Action: fault.Fail(backend.ErrUnavailable)})
	s := newStack(t, cachetest.NewCrashFS(), inner, "model", size)
	m := newModel(int(size / 512))
	var id uint64
	rounds, ops := 6, 150
	if testing.Short() || raceEnabled {
		rounds, ops = 3, 60
	}
	for r := 0; r < rounds; r++ {
		if err := m.run(t, s.v, rng, &id, ops); err != nil {
			t.Fatal(err)
		}
		snap := m.snapshot()
		mode := []cachetest.Mode{cachetest.ProcessCrash, cachetest.PowerLoss, cachetest.TornPowerLoss}[r%3]
		fc, ic, release := s.crash(t, mode, uint64(r))
		release()
		inner = fault.New(ic)
		inner.AddRule(fault.Rule{Match: fault.And(fault.Mutations(), fault.Probability(0.2, seed+uint64(r))),
			Action: fault.Fail(backend.ErrUnavailable)})
		s = newStack(t, fc, inner, "model", 0)
		snap.verify(t, s.v)
		checkVolume(t, s.v)
		// What survived is the new truth (unflushed writes may or may not
		// have): read it back into the model.
		m = adopt(t, s.v, int(size/512))
	}
	// Finally the store alone: drain, drop the local disk, open the
	// volume on the store directly.
	if err := s.c.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.v.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.close(t)
	v, err := blockmap.Open(context.Background(), inner.Inner(), "model", volumeOptions())
	if err != nil {
		t.Fatal(err)
	}
	m.snapshot().verify(t, v)
	checkVolume(t, v)
	v.Close()
}

// adopt reads a device's content into a fresh model (all flushed).
func adopt(t testing.TB, d blockdev.Device, sectors int) *model {
	t.Helper()
	m := newModel(sectors)
	buf := make([]byte, 64<<10)
	for off := int64(0); off < int64(sectors)*512; off += int64(len(buf)) {
		if err := d.ReadAt(context.Background(), buf, off); err != nil {
			t.Fatal(err)
		}
		for s := 0; s < len(buf)/512; s++ {
			lba := off/512 + int64(s)
			id, err := sectorID(buf[s*512:(s+1)*512], lba)
			if err != nil {
				t.Fatal(err)
			}
			m.hist[lba] = []uint64{id}
		}
	}
	return m
}

// TestVolumeCrashAtUploads crashes a volume over a cache at store
// mutations spread over a whole workload (each mutation in flight, lost
// or completed), with the local disk crashed too (process crash or power
// loss), and checks the recovered volume: Check passes and every flushed
// write is there. With the local disk lost instead, the store alone must
// hold a consistent volume.
func TestVolumeCrashAtUploads(t *testing.T) {
	const size = 4 << 20
	workload := func(s *stack, m *model, seed uint64) error {
		var id uint64
		ops := 120
		if raceEnabled {
			ops = 50
		}
		return m.run(t, s.v, rand.New(rand.NewPCG(seed, 9)), &id, ops)
	}
	// Count the store mutations of one run.
	inner := fault.New(mem.New(&mem.Options{DisableOverwriter: true}))
	s := newStack(t, cachetest.NewCrashFS(), inner, "crash", size)
	m := newModel(size / 512)
	if err := workload(s, m, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.c.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	total := inner.Stats().Mutations
	s.close(t)
	inner.Close()
	points := min(int(total), 16)
	if testing.Short() || raceEnabled {
		points = min(points, 6)
	}
	missed := 0
	t.Logf("%d store mutations; crashing at %d of them", total, points)
	for p := 0; p < points; p++ {
		// Coalescing depends on timing, so runs make a few more or fewer
		// mutations: spread the points over the first 90%.
		k := int64(p) * total * 9 / 10 / int64(points)
		inner := fault.New(mem.New(&mem.Options{DisableOverwriter: true}))
		fs := cachetest.NewCrashFS()
		m := newModel(size / 512)
		type taken struct {
			fs    *cachetest.CrashFS
			inner backend.Store
			snap  *cut
		}
		var got *taken
		var once sync.Once
		mode := []cachetest.Mode{cachetest.ProcessCrash, cachetest.PowerLoss, cachetest.TornPowerLoss}[p%3]
		inFlight := []fault.InFlight{fault.LoseInFlight, fault.CompleteInFlight}[p%2]
		// Before the volume exists: its creation is uploaded too.
		inner.AddRule(fault.Rule{Match: fault.MutationIndex(k), Action: fault.Call(func(fault.Op) {
			once.Do(func() {
				ic, err := inner.CrashClone(fault.CrashOptions{InFlight: inFlight, Seed: uint64(p)})
				if err != nil {
					t.Error(err)
					return
				}
				c := m.beginCut()
				fc := fs.Crash(mode, uint64(p))
				got = &taken{fc, ic, c.end()}
			})
		})})
		s := newStack(t, fs, inner, "crash", size)
		if err := workload(s, m, 1); err != nil {
			t.Fatal(err)
		}
		if err := s.c.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		s.close(t)
		inner.Close()
		if got == nil {
			t.Logf("mutation %d never happened in this run", k)
			if missed++; missed > points/4 {
				t.Fatalf("%d crash points missed", missed)
			}
			continue
		}
		// The local disk and the store, crashed together.
		storeOnly, err := cloneStore(got.inner)
		if err != nil {
			t.Fatal(err)
		}
		s2 := newStack(t, got.fs, fault.New(got.inner), "crash", 0)
		got.snap.verify(t, s2.v)
		checkVolume(t, s2.v)
		s2.close(t)
		// The store alone (the local disk lost): a consistent volume.
		v, err := blockmap.Open(context.Background(), storeOnly, "crash", volumeOptions())
		if errors.Is(err, blockmap.ErrNotFound) && k < 3 {
			continue // the volume's creation had not reached the store
		}
		if err != nil {
			t.Fatalf("crash at mutation %d: the store alone: %v", k, err)
		}
		checkVolume(t, v)
		v.Close()
	}
}

// cloneStore copies a store's objects into a new in-memory store.
func cloneStore(s backend.Store) (backend.Store, error) {
	out := mem.New(&mem.Options{DisableOverwriter: true})
	ctx := context.Background()
	var names []string
	if err := s.List(ctx, "", func(oi backend.ObjectInfo) error { names = append(names, oi.Name); return nil }); err != nil {
		return nil, err
	}
	for _, n := range names {
		info, err := s.Stat(ctx, n)
		if err != nil {
			return nil, err
		}
		b := make([]byte, info.Size)
		if _, err := s.ReadAt(ctx, n, b, 0); err != nil && info.Size > 0 {
			return nil, err
		}
		if err := out.Put(ctx, n, b); err != nil {
			return nil, err
		}
	}
	return out, nil
}
