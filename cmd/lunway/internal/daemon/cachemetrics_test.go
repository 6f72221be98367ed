package daemon

import (
	"testing"
	"time"

	"github.com/lunway/lunway/blockdev/mem"
	"github.com/lunway/lunway/cache"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"github.com/lunway/lunway/cmd/lunway/internal/metrics"
)

// cachedDevice is a device that is its own cache, as a cache hook that
// wraps the device would make it.
type cachedDevice struct {
	*mem.Device
	s cache.Stats
}

func (c *cachedDevice) Stats() cache.Stats { return c.s }

func TestCacheMetrics(t *testing.T) {
	s := cache.Stats{LogReads: 1, MemHits: 2, DiskHits: 3, Misses: 4, MemEvictions: 5, DiskEvictions: 6, ReadTimeouts: 7,
		LogBytes: 8, LogLimitBytes: 9, PendingRecords: 10, OldestPending: 1500 * time.Millisecond, WritersWaiting: 11,
		UploadedBytes: 12, UploadFailures: 13, StoreFailing: true}
	want := metrics.CacheStats{ReadHits: 6, ReadMisses: 4, ReadEvictions: 11, ReadTimeouts: 7, LogBytesUsed: 8,
		LogBytesLimit: 9, PendingUploads: 10, OldestPendingSecs: 1.5, WritersWaiting: 11, UploadedBytes: 12,
		UploadFailures: 13, StoreFailing: true}
	if got := cacheMetricsOf(s); got != want {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}

	// A device that reports cache statistics is found without the hook.
	cfg := testConfig(t, `
targets:
  - name: iqn.2026-11.dev.lunway:t
    luns: [{lun: 0, size: 1MiB, backend: {type: rbd, image: img, ceph: {mon_host: 127.0.0.1, pool: p}}}]
`)
	d, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	d.testOpen = func(cfg *config.Config, lc config.LUN, field string) (*openedBackend, error) {
		m, err := mem.New(int64(lc.Size), nil)
		return &openedBackend{dev: &cachedDevice{Device: m, s: s}, key: backendKey(cfg, lc)}, err
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(t.Context())
	snap := d.MetricsSnapshot()
	if len(snap.LUNs) != 1 || snap.LUNs[0].Cache == nil || *snap.LUNs[0].Cache != want {
		t.Fatalf("metrics snapshot %+v", snap.LUNs)
	}
}
