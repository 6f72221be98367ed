package blockmap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/mem"
	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockmap/format"
)

// storedBytes sums the sizes of a volume's segments in the store.
func storedBytes(t *testing.T, store backend.Store, vol string) (n int64, objects int) {
	t.Helper()
	err := store.List(t.Context(), format.SegmentPrefix(vol), func(oi backend.ObjectInfo) error {
		n += oi.Size
		objects++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, objects
}

func fill(b []byte, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestSpaceReclaimed overwrites a volume many times and unmaps it: GC
// keeps the stored bytes near the live bytes, and unmapping everything
// frees (almost) everything.
func TestSpaceReclaimed(t *testing.T) {
	ctx := t.Context()
	store := memStore(t, true)
	opts := testOptions()
	const size = 4 << 20
	v := newVolume(t, store, "vol", size, opts)
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 16<<10)
	if err := v.WriteAt(ctx, fill(make([]byte, size), 9), 0, 0); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 6; round++ {
		for i := 0; i < 200; i++ {
			off := rng.Int64N(size/int64(len(buf))) * int64(len(buf))
			if err := v.WriteAt(ctx, fill(buf, uint64(round*1000+i)), off, 0); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := v.GC(ctx, 0.5); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	stored, _ := storedBytes(t, store, "vol")
	st := v.Stats()
	t.Logf("after overwrites: stored %d, live %d, GC moved %d, freed %d segments, WA %.2f", stored, st.LiveBytes, st.GCBytesMoved, st.SegmentsFreed, st.WriteAmplification)
	if st.SegmentsFreed == 0 || st.GCSegments == 0 {
		t.Fatalf("GC freed nothing: %+v", st)
	}
	// Live segments are at least half live (threshold 0.5), plus the open
	// ones: stored space stays within ~2x of the data plus slack.
	if stored > 2*size+1<<20 {
		t.Fatalf("stored %d bytes for a %d-byte volume after GC", stored, size)
	}
	// Map pages: rewrite a few leaves so that the meta segments holding
	// the others become sparse; GC must rewrite the live pages elsewhere.
	for i := 0; i < 3; i++ {
		if err := v.WriteAt(ctx, buf, int64(i)<<20, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.GC(ctx, 0.99); err != nil {
		t.Fatal(err)
	}
	if st := v.Stats(); st.GCPagesRewritten == 0 {
		t.Fatalf("no map page was rewritten by GC: %+v", st)
	}
	checkVolume(t, v)
	if err := v.Unmap(ctx, 0, size); err != nil {
		t.Fatal(err)
	}
	if _, err := v.GC(ctx, 0.5); err != nil {
		t.Fatal(err)
	}
	stored, objects := storedBytes(t, store, "vol")
	if stored > 64<<10 {
		t.Fatalf("after unmapping everything %d bytes in %d segments remain", stored, objects)
	}
	ext, err := v.AllocationStatus(ctx, 0, size)
	if err != nil || len(ext) != 1 || ext[0].State != blockdev.Deallocated {
		t.Fatalf("allocation after unmap: %+v, %v", ext, err)
	}
}

// TestSnapshotsAndClones checks snapshot isolation, clone sharing (no
// data copied), deletion rules and that deleting a snapshot frees only
// what nobody else references.
func TestSnapshotsAndClones(t *testing.T) {
	ctx := t.Context()
	store := memStore(t, true)
	opts := testOptions()
	const size = 2 << 20
	v := newVolume(t, store, "base", size, opts)
	a := fill(make([]byte, size), 1)
	if err := v.WriteAt(ctx, a, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := v.Snapshot(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if err := v.Snapshot(ctx, "s1"); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate snapshot: %v", err)
	}
	if err := v.Snapshot(ctx, "bad/name"); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("bad snapshot name: %v", err)
	}
	b := fill(make([]byte, size/2), 2)
	if err := v.WriteAt(ctx, b, 0, 0); err != nil {
		t.Fatal(err)
	}
	// The snapshot still reads a.
	sv, err := OpenSnapshot(ctx, store, "base", "s1", opts)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, size)
	if err := sv.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, a) {
		t.Fatalf("snapshot content changed: %v", err)
	}
	if err := sv.WriteAt(ctx, got[:4096], 0, 0); !errors.Is(err, blockdev.ErrReadOnly) {
		t.Fatalf("write to a snapshot: %v", err)
	}
	checkVolume(t, sv)
	sv.Close()

	// A clone shares the snapshot's data: it stores almost nothing.
	before, _ := storedBytes(t, store, "base")
	c, err := Clone(ctx, store, "base", "s1", "clone", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if cs, _ := storedBytes(t, store, "clone"); cs != 0 {
		t.Fatalf("a fresh clone stores %d bytes", cs)
	}
	if err := c.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, a) {
		t.Fatalf("clone content: %v", err)
	}
	cw := fill(make([]byte, 64<<10), 3)
	if err := c.WriteAt(ctx, cw, 1<<20, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	copy(a[1<<20:], cw)
	if err := c.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, a) {
		t.Fatalf("clone after its own write: %v", err)
	}
	if cs, _ := storedBytes(t, store, "clone"); cs > 256<<10 {
		t.Fatalf("clone stores %d bytes after a 64 KiB write", cs)
	}
	// The head never sees the clone's write.
	head := make([]byte, size)
	if err := v.ReadAt(ctx, head, 0); err != nil || !bytes.Equal(head[:size/2], b) {
		t.Fatalf("head content: %v", err)
	}
	if info := c.Describe(); info.Origin != "base@s1" {
		t.Fatalf("clone origin %q", info.Origin)
	}
	checkVolume(t, c)

	// Deleting the origin snapshot or volume is refused while the clone lives.
	if err := v.DeleteSnapshot(ctx, "s1"); !errors.Is(err, blockdev.ErrInUse) {
		t.Fatalf("DeleteSnapshot with a clone: %v", err)
	}
	if err := Delete(ctx, store, "base"); !errors.Is(err, blockdev.ErrInUse) {
		t.Fatalf("Delete with a clone: %v", err)
	}
	// A clone of the clone: three layers.
	if err := c.Snapshot(ctx, "cs"); err != nil {
		t.Fatal(err)
	}
	c2, err := Clone(ctx, store, "clone", "cs", "clone2", opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, a) {
		t.Fatalf("clone of a clone: %v", err)
	}
	checkVolume(t, c2)
	c2.Close()
	if err := Delete(ctx, store, "clone2"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSnapshot(ctx, "cs"); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Delete(ctx, store, "clone"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, store, "clone", opts); !errors.Is(err, ErrNotFound) {
		t.Fatalf("open a deleted clone: %v", err)
	}
	if _, err := Clone(ctx, store, "base", "nope", "x", opts); !errors.Is(err, ErrNotFound) {
		t.Fatalf("clone of a missing snapshot: %v", err)
	}
	// Now the snapshot can go, and the data only it referenced with it.
	withSnap, _ := storedBytes(t, store, "base")
	if err := v.DeleteSnapshot(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.GC(ctx, 0.5); err != nil {
		t.Fatal(err)
	}
	after, _ := storedBytes(t, store, "base")
	t.Logf("base stored: %d before clone, %d with snapshot, %d after deleting it", before, withSnap, after)
	if after >= withSnap-size/4 {
		t.Fatalf("deleting the snapshot freed too little: %d -> %d", withSnap, after)
	}
	if err := v.ReadAt(ctx, head, 0); err != nil || !bytes.Equal(head[:size/2], b) {
		t.Fatalf("head after deleting the snapshot: %v", err)
	}
	names, err := List(ctx, store)
	if err != nil || strings.Join(names, ",") != "base" {
		t.Fatalf("List = %v, %v", names, err)
	}
}

// TestCheckNamesDamage damages objects and checks that Check and reads
// report corruption naming the object.
func TestCheckNamesDamage(t *testing.T) {
	ctx := t.Context()
	setup := func(t *testing.T) mem.Store {
		s := mem.New(nil)
		t.Cleanup(func() { s.Close() })
		v, err := Create(ctx, s, "vol", 1<<20, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		if err := v.WriteAt(ctx, fill(make([]byte, 256<<10), 4), 0, 0); err != nil {
			t.Fatal(err)
		}
		if err := v.Close(); err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Find the data segment and a meta segment.
	kinds := func(t *testing.T, s mem.Store) (data, meta string) {
		err := s.List(ctx, "vol/seg/", func(oi backend.ObjectInfo) error {
			b := make([]byte, 64)
			if _, err := s.ReadAt(ctx, oi.Name, b, 0); err != nil {
				return err
			}
			switch format.RecordKind(b[10]) {
			case format.RecordData:
				data = oi.Name
			case format.RecordMeta:
				meta = oi.Name
			}
			return nil
		})
		if err != nil || data == "" || meta == "" {
			t.Fatalf("segments: data %q meta %q: %v", data, meta, err)
		}
		return data, meta
	}
	flip := func(t *testing.T, s mem.Store, name string, off int64) {
		b := make([]byte, 1)
		if _, err := s.ReadAt(ctx, name, b, off); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0x10
		if err := s.(backend.Overwriter).WriteAt(ctx, name, b, off); err != nil {
			t.Fatal(err)
		}
	}
	expectCheck := func(t *testing.T, s mem.Store, name string) {
		v, err := Open(ctx, s, "vol", &Options{ReadOnly: true})
		if err != nil {
			if !errors.Is(err, blockdev.ErrCorrupt) || !strings.Contains(err.Error(), name) {
				t.Fatalf("Open: %v, want corruption naming %s", err, name)
			}
			return
		}
		defer v.Close()
		_, err = v.Check(ctx)
		if !errors.Is(err, blockdev.ErrCorrupt) || !errors.Is(err, ErrCheck) || !strings.Contains(err.Error(), name) {
			t.Fatalf("Check: %v, want a check failure naming %s", err, name)
		}
	}
	t.Run("data", func(t *testing.T) {
		s := setup(t)
		data, _ := kinds(t, s)
		// A payload byte of the first record (its header's padding is
		// not covered by a checksum).
		b := make([]byte, 16)
		if _, err := s.ReadAt(ctx, data, b, 0); err != nil {
			t.Fatal(err)
		}
		flip(t, s, data, int64(binary.LittleEndian.Uint32(b[12:]))+88)
		expectCheck(t, s, data)
	})
	t.Run("page", func(t *testing.T) {
		s := setup(t)
		_, meta := kinds(t, s)
		flip(t, s, meta, 4096+30)
		expectCheck(t, s, meta)
		// A read through the damaged page fails as corrupt, naming it.
		v, err := Open(ctx, s, "vol", &Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		err = v.ReadAt(ctx, make([]byte, 4096), 0)
		if !errors.Is(err, blockdev.ErrCorrupt) || !strings.Contains(err.Error(), meta) {
			t.Fatalf("read through a damaged page: %v", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		s := setup(t)
		data, _ := kinds(t, s)
		if err := s.Delete(ctx, data); err != nil {
			t.Fatal(err)
		}
		expectCheck(t, s, data)
	})
	t.Run("checkpoint", func(t *testing.T) {
		s := setup(t)
		var ck string
		s.List(ctx, "vol/ckpt/", func(oi backend.ObjectInfo) error { ck = oi.Name; return nil })
		flip(t, s, ck, 40)
		_, err := Open(ctx, s, "vol", nil)
		if !errors.Is(err, blockdev.ErrCorrupt) || !strings.Contains(err.Error(), ck) {
			t.Fatalf("Open with a damaged root: %v", err)
		}
	})
	t.Run("version", func(t *testing.T) {
		s := setup(t)
		b, err := readObject(ctx, s, "vol/super", 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		b[8] = 2 // format version 2
		if err := s.Put(ctx, "vol/super", b); err != nil {
			t.Fatal(err)
		}
		_, err = Open(ctx, s, "vol", nil)
		if !errors.Is(err, ErrUnsupportedVersion) || !strings.Contains(err.Error(), "version 2") {
			t.Fatalf("Open of a version-2 volume: %v", err)
		}
	})
}

// TestNames checks name validation and that volumes with prefix-related
// names do not see each other's objects.
func TestNames(t *testing.T) {
	ctx := t.Context()
	store := memStore(t, true)
	for _, bad := range []string{"", "a/b", ".x", "x y", strings.Repeat("a", 65)} {
		if _, err := Create(ctx, store, bad, 1<<20, nil); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Create(%q): %v", bad, err)
		}
	}
	a := newVolume(t, store, "a", 1<<20, testOptions())
	ab := newVolume(t, store, "a.b", 1<<20, testOptions())
	if _, err := Create(ctx, store, "a", 1<<20, nil); !errors.Is(err, ErrExists) {
		t.Fatalf("Create of an existing volume: %v", err)
	}
	if err := a.WriteAt(ctx, bytes.Repeat([]byte{1}, 4096), 0, blockdev.FUA); err != nil {
		t.Fatal(err)
	}
	if err := ab.WriteAt(ctx, bytes.Repeat([]byte{2}, 4096), 0, blockdev.FUA); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4096)
	if err := a.ReadAt(ctx, got, 0); err != nil || got[0] != 1 {
		t.Fatalf("a reads %d: %v", got[0], err)
	}
	if _, err := Open(ctx, store, "missing", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open of a missing volume: %v", err)
	}
}

// TestWriteOrder checks that writes to one LBA keep their
// acknowledgement order under concurrency, with readers running.
func TestWriteOrder(t *testing.T) {
	ctx := t.Context()
	store := memStore(t, true)
	opts := testOptions()
	v := newVolume(t, store, "vol", 1<<20, opts)
	const writers, rounds = 8, 200
	var wg sync.WaitGroup
	stop := make(chan struct{})
	// Each writer owns a block and writes increasing counters; after each
	// acknowledged write a read must never see an older counter.
	for w := 0; w < writers; w++ {
		wg.Go(func() {
			off := int64(w) * 4096
			buf := make([]byte, 4096)
			got := make([]byte, 4096)
			for i := 1; i <= rounds; i++ {
				buf[0], buf[1] = byte(i), byte(i>>8)
				if err := v.WriteAt(ctx, buf, off, 0); err != nil {
					t.Error(err)
					return
				}
				if err := v.ReadAt(ctx, got, off); err != nil {
					t.Error(err)
					return
				}
				if n := int(got[0]) | int(got[1])<<8; n != i {
					t.Errorf("writer %d: read %d after writing %d", w, n, i)
					return
				}
			}
		})
	}
	// Background churn: checkpoints, GC and readers of the whole range.
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := v.Checkpoint(ctx); err != nil {
				t.Error(err)
				return
			}
			if _, err := v.GC(ctx, 0.9); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for r := 0; r < 2; r++ {
		wg.Go(func() {
			buf := make([]byte, 64<<10)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := v.ReadAt(ctx, buf, 0); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	// Same-LBA contention: the final value is the last acknowledged one.
	for i := 0; i < 50; i++ {
		var mu sync.Mutex
		var order []byte
		var inner sync.WaitGroup
		for w := 0; w < 4; w++ {
			inner.Go(func() {
				mu.Lock()
				defer mu.Unlock()
				b := byte(i*4 + w)
				if err := v.WriteAt(ctx, bytes.Repeat([]byte{b}, 4096), 512<<10, 0); err != nil {
					t.Error(err)
				}
				order = append(order, b)
			})
		}
		inner.Wait()
		got := make([]byte, 4096)
		if err := v.ReadAt(ctx, got, 512<<10); err != nil {
			t.Fatal(err)
		}
		if got[0] != order[len(order)-1] {
			t.Fatalf("round %d: read %d, last acknowledged %d", i, got[0], order[len(order)-1])
		}
	}
	// Let the writers finish before stopping the churn.
	waitWriters := make(chan struct{})
	go func() { wg.Wait(); close(waitWriters) }()
	close(stop)
	<-waitWriters
}
