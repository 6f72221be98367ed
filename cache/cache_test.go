package cache_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/backendtest"
	"github.com/lunway/lunway/backend/fault"
	"github.com/lunway/lunway/backend/mem"
	"github.com/lunway/lunway/cache"
	"github.com/lunway/lunway/cache/cachetest"
)

// smallOptions are sizes that make tests exercise log rolls, full logs
// and read-cache evictions quickly.
func smallOptions(dir string, fs cache.FS) *cache.Options {
	return &cache.Options{
		Dir:           dir,
		FS:            fs,
		LogBytes:      8 << 20,
		LogFileBytes:  256 << 10,
		ReadDiskBytes: 1 << 20,
		ReadMemBytes:  1 << 20,
		ChunkBytes:    16 << 10,
		ReadTimeout:   2 * time.Second,
		FullWait:      2 * time.Second,
		UploadHold:    20 * time.Millisecond,
		RetryMinDelay: 2 * time.Millisecond,
		RetryMaxDelay: 20 * time.Millisecond,
	}
}

func openCache(t testing.TB, inner backend.Store, o *cache.Options) *cache.Cache {
	t.Helper()
	c, err := cache.Open(context.Background(), inner, o)
	if err != nil {
		t.Fatalf("cache.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil && !errors.Is(err, backend.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// TestConformance runs the backend suite on caches over stores with and
// without Overwriter, on disk and on the crash-simulating file system.
func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name      string
		overwrite bool
		memfs     bool
	}{
		{"mem-putonly", false, false},
		{"mem-overwriter", true, false},
		{"crashfs-putonly", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T) backend.Store {
				inner := mem.New(&mem.Options{DisableOverwriter: !tc.overwrite})
				t.Cleanup(func() { inner.Close() })
				var o *cache.Options
				if tc.memfs {
					o = smallOptions("/c", cachetest.NewCrashFS())
				} else {
					o = smallOptions(t.TempDir(), nil)
				}
				c, err := cache.Open(t.Context(), inner, o)
				if err != nil {
					t.Fatal(err)
				}
				return c
			})
		})
	}
}

// TestConformanceFaulty runs the suite while the store fails half of its
// operations: the log hides every failure.
func TestConformanceFaulty(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Store {
		inner := fault.New(mem.New(&mem.Options{DisableOverwriter: true}))
		inner.AddRule(fault.Rule{Match: fault.And(fault.Mutations(), fault.Probability(0.5, 1)),
			Action: fault.Fail(backend.ErrUnavailable)})
		t.Cleanup(func() { inner.Close() })
		c, err := cache.Open(t.Context(), inner, smallOptions(t.TempDir(), nil))
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}
