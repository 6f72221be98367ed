package blockmap

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lunway/lunway/backend/fault"
	"github.com/lunway/lunway/backend/mem"
	"github.com/lunway/lunway/blockdev"
)

// eventually retries f until it succeeds or the deadline passes.
func eventually(t *testing.T, what string, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUnavailable takes the store away during writes, flushes, reads,
// checkpoints and GC: every failure wraps blockdev.ErrUnavailable,
// nothing corrupts, and the same Volume serves again once the store is
// back.
func TestUnavailable(t *testing.T) {
	for _, overwrite := range []bool{true, false} {
		t.Run(map[bool]string{true: "overwrite", false: "putonly"}[overwrite], func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			fs := fault.New(mem.New(&mem.Options{DisableOverwriter: !overwrite}))
			t.Cleanup(func() { fs.Close() })
			opts := testOptions()
			opts.MaxDirtyBytes = 256 << 10
			opts.DisableBackground = false // the background must recover by itself
			opts.CheckpointInterval = 50 * time.Millisecond
			opts.GCInterval = 50 * time.Millisecond
			const size = 4 << 20
			v := newVolume(t, fs, "vol", size, opts)
			model := make([]byte, size)
			write := func(off int64, n int, b byte, flags blockdev.WriteFlags) error {
				p := bytes.Repeat([]byte{b}, n)
				err := v.WriteAt(ctx, p, off, flags)
				if err == nil {
					copy(model[off:], p)
				}
				return err
			}
			for i := range 16 {
				if err := write(int64(i)*(64<<10), 64<<10, byte(i+1), 0); err != nil {
					t.Fatal(err)
				}
			}
			if err := v.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}

			fs.SetAvailability(fault.Unavailable)
			// Reads of data in the store fail retryably.
			buf := make([]byte, 4096)
			if err := v.ReadAt(ctx, buf, 0); !errors.Is(err, blockdev.ErrUnavailable) {
				t.Fatalf("read during outage: %v, want ErrUnavailable", err)
			}
			// A write is absorbed in memory; FUA and Flush fail retryably.
			if err := write(1<<20, 4096, 0xaa, 0); err != nil {
				t.Fatalf("write absorbed in memory: %v", err)
			}
			if err := v.WriteAt(ctx, make([]byte, 4096), 2<<20, blockdev.FUA); !errors.Is(err, blockdev.ErrUnavailable) {
				t.Fatalf("FUA write during outage: %v, want ErrUnavailable", err)
			}
			copy(model[2<<20:], make([]byte, 4096)) // it reached memory before failing
			if err := v.Flush(ctx); !errors.Is(err, blockdev.ErrUnavailable) {
				t.Fatalf("Flush during outage: %v, want ErrUnavailable", err)
			}
			// Writes beyond the dirty bound fail instead of hanging.
			var werr error
			for i := 0; i < 200 && werr == nil; i++ {
				werr = write(int64(i%64)*(64<<10), 64<<10, 0x55, 0)
			}
			if !errors.Is(werr, blockdev.ErrUnavailable) {
				t.Fatalf("writes past the dirty bound during outage: %v, want ErrUnavailable", werr)
			}
			if _, err := v.GC(ctx, 0.99); err != nil && !errors.Is(err, blockdev.ErrUnavailable) {
				t.Fatalf("GC during outage: %v", err)
			}
			if err := v.Checkpoint(ctx); !errors.Is(err, blockdev.ErrUnavailable) {
				t.Fatalf("Checkpoint during outage: %v, want ErrUnavailable", err)
			}
			if h := v.Health(); h != blockdev.Unavailable {
				t.Fatalf("Health during outage: %v", h)
			}

			fs.SetAvailability(fault.Available)
			eventually(t, "Flush after the outage", 10*time.Second, func() error { return v.Flush(ctx) })
			if h := v.Health(); h != blockdev.Healthy {
				t.Fatalf("Health after the outage: %v", h)
			}
			got := make([]byte, size)
			if err := v.ReadAt(ctx, got, 0); err != nil {
				t.Fatal(err)
			}
			if i := firstDiff(got, model); i >= 0 {
				t.Fatalf("after the outage byte %d is %#x, want %#x", i, got[i], model[i])
			}
			if err := write(3<<20, 4096, 0x77, blockdev.FUA); err != nil {
				t.Fatalf("FUA write after the outage: %v", err)
			}
			if _, err := v.GC(ctx, 0.99); err != nil {
				t.Fatalf("GC after the outage: %v", err)
			}
			checkVolume(t, v)
		})
	}
}

// TestUnavailableHang makes every store call hang: calls with deadlines
// return in time, and everything proceeds once the store is back.
func TestUnavailableHang(t *testing.T) {
	ctx := t.Context()
	fs := fault.New(mem.New(nil))
	t.Cleanup(func() { fs.Close() })
	opts := testOptions()
	opts.StoreTimeout = 100 * time.Millisecond
	v := newVolume(t, fs, "vol", 1<<20, opts)
	if err := v.WriteAt(ctx, bytes.Repeat([]byte{1}, 8192), 0, 0); err != nil {
		t.Fatal(err)
	}
	fs.SetAvailability(fault.UnavailableHang)
	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	start := time.Now()
	err := v.Flush(tctx)
	cancel()
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("Flush on a hung store: %v after %v", err, time.Since(start))
	}
	if !errors.Is(err, blockdev.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush on a hung store: %v", err)
	}
	fs.SetAvailability(fault.Available)
	eventually(t, "Flush after the hang", 10*time.Second, func() error { return v.Flush(ctx) })
	got := make([]byte, 8192)
	if err := v.ReadAt(ctx, got, 0); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{1}, 8192)) {
		t.Fatalf("read after the hang: %v", err)
	}
}

// TestFailedOps injects single failures into each kind of store write
// and checks that the volume stays consistent and recovers.
func TestFailedOps(t *testing.T) {
	for _, kind := range []fault.Kind{fault.OpPut, fault.OpWriteAt, fault.OpDelete} {
		t.Run(kind.String(), func(t *testing.T) {
			ctx := t.Context()
			// Segments are Put only on stores that cannot overwrite.
			fs := fault.New(mem.New(&mem.Options{DisableOverwriter: kind == fault.OpPut}))
			t.Cleanup(func() { fs.Close() })
			opts := testOptions()
			v := newVolume(t, fs, "vol", 2<<20, opts)
			rule := fs.AddRule(fault.Rule{Match: fault.And(fault.Kinds(kind), fault.Probability(0.3, 1)),
				Action: fault.Fail(blockdev.ErrUnavailable), Times: 20})
			model := make([]byte, 2<<20)
			for i := 0; i < 300; i++ {
				off := int64(i*7919%480) * 4096
				p := bytes.Repeat([]byte{byte(i)}, 4096)
				if err := v.WriteAt(ctx, p, off, 0); err != nil && !errors.Is(err, blockdev.ErrUnavailable) {
					t.Fatalf("write: %v", err)
				}
				copy(model[off:], p) // in memory even if a later flush failed
				if i%10 == 9 {
					if err := v.Flush(ctx); err != nil && !errors.Is(err, blockdev.ErrUnavailable) {
						t.Fatalf("flush: %v", err)
					}
				}
				if i%50 == 49 {
					if _, err := v.GC(ctx, 0.9); err != nil && !errors.Is(err, blockdev.ErrUnavailable) {
						t.Fatalf("gc: %v", err)
					}
					if err := v.Checkpoint(ctx); err != nil && !errors.Is(err, blockdev.ErrUnavailable) {
						t.Fatalf("checkpoint: %v", err)
					}
				}
			}
			if fs.Hits(rule) == 0 {
				t.Fatalf("no %v failed: the test tested nothing", kind)
			}
			fs.ClearRules()
			eventually(t, "Flush", 10*time.Second, func() error { return v.Flush(ctx) })
			got := make([]byte, len(model))
			if err := v.ReadAt(ctx, got, 0); err != nil {
				t.Fatal(err)
			}
			if i := firstDiff(got, model); i >= 0 {
				t.Fatalf("byte %d differs", i)
			}
		})
	}
}

// TestCloseDuringOutage closes a volume whose store is down: Close
// reports the failure promptly and is closed anyway; what was flushed
// before is intact on the store.
func TestCloseDuringOutage(t *testing.T) {
	for _, mode := range []fault.Availability{fault.Unavailable, fault.UnavailableHang} {
		t.Run(mode.String(), func(t *testing.T) {
			ctx := t.Context()
			fs := fault.New(mem.New(nil))
			t.Cleanup(func() { fs.Close() })
			opts := testOptions()
			opts.StoreTimeout = 100 * time.Millisecond
			v, err := Create(ctx, fs, "vol", 1<<20, opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := v.WriteAt(ctx, bytes.Repeat([]byte{7}, 4096), 0, blockdev.FUA); err != nil {
				t.Fatal(err)
			}
			if err := v.WriteAt(ctx, bytes.Repeat([]byte{8}, 4096), 4096, 0); err != nil {
				t.Fatal(err)
			}
			fs.SetAvailability(mode)
			start := time.Now()
			err = v.Close()
			if err == nil || time.Since(start) > 10*time.Second {
				t.Fatalf("Close during an outage: %v after %v", err, time.Since(start))
			}
			if !errors.Is(err, blockdev.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Close during an outage: %v", err)
			}
			if err := v.Close(); !errors.Is(err, blockdev.ErrClosed) {
				t.Fatalf("second Close: %v", err)
			}
			fs.SetAvailability(fault.Available)
			checkStore(t, fs, "vol", opts)
			v2, err := Open(ctx, fs, "vol", opts)
			if err != nil {
				t.Fatal(err)
			}
			defer v2.Close()
			got := make([]byte, 4096)
			if err := v2.ReadAt(ctx, got, 0); err != nil || got[0] != 7 {
				t.Fatalf("FUA data after the outage: %d, %v", got[0], err)
			}
		})
	}
}
