package blockmap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/fault"
	"github.com/lunway/lunway/backend/mem"
	"github.com/lunway/lunway/blockdev"
)

// crashModel tracks, per block, what may legitimately be read after a
// crash: the value made durable by the last completed Flush (or FUA
// write of that block), or any value written since.
type crashModel struct {
	bs      int64
	stable  [][]byte   // per block; nil means zeros
	pending [][][]byte // per block: values written since
	cur     []byte     // what reads must return while running
}

func newCrashModel(size, bs int64) *crashModel {
	n := size / bs
	return &crashModel{bs: bs, stable: make([][]byte, n), pending: make([][][]byte, n), cur: make([]byte, size)}
}

// begin records a write (nil p: zeros) as possibly durable from now on.
func (m *crashModel) begin(off int64, p []byte, n int64) {
	for b := off / m.bs; b < (off+n)/m.bs; b++ {
		var v []byte
		if p != nil {
			v = p[(b-off/m.bs)*m.bs : (b-off/m.bs+1)*m.bs]
		}
		m.pending[b] = append(m.pending[b], v)
		if v == nil {
			clear(m.cur[b*m.bs : (b+1)*m.bs])
		} else {
			copy(m.cur[b*m.bs:], v)
		}
	}
}

// durable records that the blocks of [off, off+n) now hold cur durably.
func (m *crashModel) durable(off, n int64) {
	for b := off / m.bs; b < (off+n)/m.bs; b++ {
		m.stable[b] = bytes.Clone(m.cur[b*m.bs : (b+1)*m.bs])
		m.pending[b] = nil
	}
}

func (m *crashModel) flushed() { m.durable(0, int64(len(m.cur))) }

// verify checks every block of a recovered device.
func (m *crashModel) verify(got []byte) error {
	zero := make([]byte, m.bs)
	for b := range m.stable {
		blk := got[int64(b)*m.bs : int64(b+1)*m.bs]
		ok := bytes.Equal(blk, orZero(m.stable[b], zero))
		for _, p := range m.pending[b] {
			ok = ok || bytes.Equal(blk, orZero(p, zero))
		}
		if !ok {
			return fmt.Errorf("block %d holds neither its durable content nor a later write (%d candidates)", b, 1+len(m.pending[b]))
		}
	}
	return nil
}

func orZero(b, zero []byte) []byte {
	if b == nil {
		return zero
	}
	return b
}

// crashWorkload is a scripted workload over a volume, recording what it
// did in a crashModel. It stops at the first error (after a crash every
// store call fails). snapModel receives the content the snapshot "s1"
// must have, once Snapshot returned.
type crashWorkload struct {
	size      int64
	opts      *Options
	m         *crashModel
	created   bool
	snapTaken []byte
	v         *Volume
}

func (w *crashWorkload) run(ctx context.Context, store backend.Store) error {
	v, err := Create(ctx, store, "vol", w.size, w.opts)
	if err != nil {
		return err
	}
	w.v, w.created = v, true
	bs := w.m.bs
	rng := rand.New(rand.NewPCG(7, 7))
	data := func(n int64) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.IntN(256))
		}
		return p
	}
	write := func(off, n int64, flags blockdev.WriteFlags) error {
		p := data(n)
		w.m.begin(off, p, n)
		if err := v.WriteAt(ctx, p, off, flags); err != nil {
			return err
		}
		if flags&blockdev.FUA != 0 {
			w.m.durable(off, n)
		}
		return nil
	}
	flush := func() error {
		if err := v.Flush(ctx); err != nil {
			return err
		}
		w.m.flushed()
		return nil
	}
	blocks := w.size / bs
	steps := []func() error{
		func() error { return write(0, 64<<10, 0) },
		func() error { return write(8*bs, 16*bs, blockdev.FUA) },
		flush,
		func() error { return write(128<<10, 200<<10, 0) },
		func() error { return write(4*bs, bs, 0) },
		func() error {
			w.m.begin(32<<10, nil, 64<<10)
			return v.Unmap(ctx, 32<<10, 64<<10)
		},
		flush,
		func() error {
			for i := 0; i < 40; i++ {
				if err := write(rng.Int64N(blocks-8)*bs, (1+rng.Int64N(8))*bs, 0); err != nil {
					return err
				}
			}
			return nil
		},
		func() error { return v.Checkpoint(ctx) },
		func() error { return write(0, 32<<10, blockdev.FUA) },
		func() error {
			// The snapshot holds everything completed before it.
			if err := v.Snapshot(ctx, "s1"); err != nil {
				return err
			}
			w.snapTaken = bytes.Clone(w.m.cur)
			return nil
		},
		func() error {
			for i := 0; i < 60; i++ {
				if err := write(rng.Int64N(blocks-4)*bs, (1+rng.Int64N(4))*bs, 0); err != nil {
					return err
				}
			}
			return flush()
		},
		func() error {
			_, err := v.GC(ctx, 0.95)
			return err
		},
		func() error {
			// A clone of s1, written to, then deleted; then s1 itself.
			c, err := Clone(ctx, store, "vol", "s1", "c", w.opts)
			if err != nil {
				return err
			}
			p := data(8 * bs)
			if err := c.WriteAt(ctx, p, 0, blockdev.FUA); err != nil {
				c.abandon()
				return err
			}
			if err := c.Close(); err != nil {
				return err
			}
			if err := Delete(ctx, store, "c"); err != nil {
				return err
			}
			return v.DeleteSnapshot(ctx, "s1")
		},
		func() error { return write(blocks/2*bs, 8*bs, blockdev.FUA) },
		func() error {
			w.m.begin(0, nil, w.size/2)
			if err := v.WriteZeroes(ctx, 0, w.size/2, true, blockdev.FUA); err != nil {
				return err
			}
			w.m.durable(0, w.size/2)
			return nil
		},
		func() error { return write(3*bs, 2*bs, 0) },
		func() error { return v.Close() },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}

// recoverAndVerify opens the volume on a crash clone and checks it.
func recoverAndVerify(t *testing.T, clone backend.Store, w *crashWorkload, what string) {
	t.Helper()
	ctx := context.Background()
	v, err := Open(ctx, clone, "vol", w.opts)
	if errors.Is(err, ErrNotFound) && !w.created {
		return // crashed inside Create: no volume is a correct outcome
	}
	if err != nil {
		t.Fatalf("%s: reopen: %v", what, err)
	}
	defer v.Close()
	if rep, err := v.Check(ctx); err != nil {
		t.Fatalf("%s: Check: %v\n%q", what, err, rep.Problems)
	}
	got := make([]byte, w.size)
	if err := v.ReadAt(ctx, got, 0); err != nil {
		t.Fatalf("%s: read: %v", what, err)
	}
	if err := w.m.verify(got); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	// A clone that exists is consistent and reads the snapshot or its
	// own write over it.
	if cv, err := Open(ctx, clone, "c", w.opts); err == nil {
		if rep, err := cv.Check(ctx); err != nil {
			t.Fatalf("%s: Check(clone): %v\n%q", what, err, rep.Problems)
		}
		cg := make([]byte, w.size)
		if err := cv.ReadAt(ctx, cg, 0); err != nil {
			t.Fatalf("%s: read clone: %v", what, err)
		}
		if w.snapTaken != nil && !bytes.Equal(cg[8*w.m.bs:], w.snapTaken[8*w.m.bs:]) {
			t.Fatalf("%s: clone content differs from its snapshot", what)
		}
		cv.Close()
	} else if !errors.Is(err, ErrNotFound) {
		t.Fatalf("%s: open clone: %v", what, err)
	}
	// A snapshot that exists is exact.
	if sv, err := OpenSnapshot(ctx, clone, "vol", "s1", w.opts); err == nil {
		sg := make([]byte, w.size)
		if err := sv.ReadAt(ctx, sg, 0); err != nil {
			t.Fatalf("%s: read snapshot: %v", what, err)
		}
		sv.Close()
		if w.snapTaken != nil && !bytes.Equal(sg, w.snapTaken) {
			t.Fatalf("%s: snapshot content differs from the volume when it was taken", what)
		}
	} else if !errors.Is(err, ErrNotFound) {
		t.Fatalf("%s: open snapshot: %v", what, err)
	}
	// The recovered volume keeps working.
	p := bytes.Repeat([]byte{0xa5}, int(w.m.bs))
	if err := v.WriteAt(ctx, p, 0, blockdev.FUA); err != nil {
		t.Fatalf("%s: write after recovery: %v", what, err)
	}
	if rep, err := v.Check(ctx); err != nil {
		t.Fatalf("%s: Check after a write: %v\n%q", what, err, rep.Problems)
	}
}

// TestCrashEveryMutation crashes a scripted workload at every mutating
// store operation (tearing the operation in flight), reopens the crash
// clone, checks it, and verifies that every write made durable before the
// crash is there and no block holds anything but its durable content or
// a later write.
func TestCrashEveryMutation(t *testing.T) {
	for _, overwrite := range []bool{true, false} {
		for _, bs := range []int{512, 4096} {
			if raceEnabled && overwrite != (bs == 4096) {
				continue // two of the four variants under the race detector
			}
			t.Run(fmt.Sprintf("overwrite=%v/bs=%d", overwrite, bs), func(t *testing.T) {
				t.Parallel()
				opts := testOptions()
				opts.LogicalBlockSize = bs
				opts.SegmentSize = 64 << 10
				opts.MaxDeltaExtents = 256
				const size = 1 << 20
				crashes := 0
				for k := int64(0); ; k++ {
					inner := mem.New(&mem.Options{DisableOverwriter: !overwrite})
					fs := fault.New(inner)
					fs.AddRule(fault.Rule{
						Match:  fault.MutationIndex(k),
						Action: fault.Crash(fault.CrashOptions{InFlight: fault.InFlight(k % 3), Seed: uint64(k)}),
					})
					w := &crashWorkload{size: size, opts: opts, m: newCrashModel(size, int64(bs))}
					err := w.run(context.Background(), fs)
					if w.v != nil {
						w.v.abandon()
					}
					clone, crashed := fs.Crashed()
					if !crashed {
						if err != nil {
							t.Fatalf("workload failed without a crash: %v", err)
						}
						break
					}
					if err == nil {
						// The crash hit a background write after the last
						// step; everything was closed durably.
						w.m.flushed()
					}
					crashes++
					recoverAndVerify(t, clone, w, fmt.Sprintf("crash at mutation %d (%v)", k, fault.InFlight(k%3)))
					fs.Close()
				}
				if crashes < 20 {
					t.Fatalf("only %d crash points: the workload is too small to mean anything", crashes)
				}
				t.Logf("%d crash points verified", crashes)
			})
		}
	}
}
