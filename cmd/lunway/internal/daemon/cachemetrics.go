package daemon

import (
	"github.com/lunway/lunway/cache"
	"github.com/lunway/lunway/cmd/lunway/internal/metrics"
)

// cacheStatser is a local cache in front of a LUN's store (package cache).
type cacheStatser interface {
	Stats() cache.Stats
}

// cacheMetrics returns the reader of c's statistics for the metrics. The
// hook that puts a cache in front of a LUN's store sets
// openedBackend.cacheStats to it; a device that is itself a cache is
// found without the hook (newLUN).
func cacheMetrics(c cacheStatser) func() metrics.CacheStats {
	return func() metrics.CacheStats { return cacheMetricsOf(c.Stats()) }
}

func cacheMetricsOf(s cache.Stats) metrics.CacheStats {
	return metrics.CacheStats{
		ReadHits:          uint64(max(s.LogReads+s.MemHits+s.DiskHits, 0)),
		ReadMisses:        uint64(max(s.Misses, 0)),
		ReadEvictions:     uint64(max(s.MemEvictions+s.DiskEvictions, 0)),
		ReadTimeouts:      uint64(max(s.ReadTimeouts, 0)),
		LogBytesUsed:      s.LogBytes,
		LogBytesLimit:     s.LogLimitBytes,
		PendingUploads:    int64(s.PendingRecords),
		OldestPendingSecs: s.OldestPending.Seconds(),
		WritersWaiting:    int64(s.WritersWaiting),
		UploadedBytes:     uint64(max(s.UploadedBytes, 0)),
		UploadFailures:    uint64(max(s.UploadFailures, 0)),
		StoreFailing:      s.StoreFailing,
	}
}
