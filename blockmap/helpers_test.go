package blockmap

import (
	"context"
	"errors"
	"testing"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/mem"
	"github.com/lunway/lunway/blockdev"
)

// testOptions are small sizes so that tests exercise segment rolls,
// checkpoints and the memory bounds quickly.
func testOptions() *Options {
	return &Options{
		SegmentSize:       128 << 10,
		CacheBytes:        4 << 20,
		MaxDirtyBytes:     1 << 20,
		MaxDeltaExtents:   4096,
		DisableBackground: true,
	}
}

// checkVolume runs Check on an open volume and fails the test with the
// problems it reports.
func checkVolume(t testing.TB, v *Volume) CheckReport {
	t.Helper()
	rep, err := v.Check(context.Background())
	if err != nil {
		t.Errorf("Check(%s): %v\nproblems: %q", v.name, err, rep.Problems)
	}
	return rep
}

// checkStore opens volume name from store, checks it and closes it.
// Tests register it with t.Cleanup after their volumes are closed.
func checkStore(t testing.TB, store backend.Store, name string, opts *Options) {
	t.Helper()
	v, err := Open(context.Background(), store, name, opts)
	if err != nil {
		t.Errorf("reopen %s for Check: %v", name, err)
		return
	}
	rep := checkVolume(t, v)
	if err := v.Close(); err != nil {
		t.Errorf("Close %s after Check: %v", name, err)
	}
	if len(rep.Leaked) > 0 {
		t.Errorf("Check(%s): leaked segments after a clean close: %v", name, rep.Leaked)
	}
}

// newVolume creates a volume and registers, in order: close it if the
// test left it open, then reopen it from the store and Check it.
func newVolume(t testing.TB, store backend.Store, name string, size int64, opts *Options) *Volume {
	t.Helper()
	v, err := Create(context.Background(), store, name, size, opts)
	if err != nil {
		t.Fatalf("Create(%s): %v", name, err)
	}
	t.Cleanup(func() { checkStore(t, store, name, opts) })
	t.Cleanup(func() {
		if err := v.Close(); err != nil && !errors.Is(err, blockdev.ErrClosed) {
			t.Errorf("Close(%s): %v", name, err)
		}
	})
	return v
}

func memStore(t testing.TB, overwrite bool) backend.Store {
	t.Helper()
	s := mem.New(&mem.Options{DisableOverwriter: !overwrite})
	t.Cleanup(func() { s.Close() })
	return s
}
