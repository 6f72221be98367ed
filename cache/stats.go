package cache

import (
	"sync/atomic"
	"time"

	"github.com/lunway/lunway/blockdev"
)

// counters are the Cache's statistics, updated without the lock.
type counters struct {
	appends, appendBytes, syncs, roomWaits, directPuts  atomic.Int64
	uploads, uploadedOps, uploadedBytes, uploadFailures atomic.Int64
	imageFetches                                        atomic.Int64
	logReads, memHits, diskHits, misses                 atomic.Int64
	memEvictions, diskEvictions, innerReadBytes         atomic.Int64
	readTimeouts                                        atomic.Int64
}

// Stats is a snapshot of a Cache's state and counters, for metrics and
// the management API.
type Stats struct {
	// Health is the cache's health (see Cache.Health).
	Health blockdev.Health
	// StoreFailing reports that the last store operation failed (since
	// StoreFailingSince, with StoreError) or an upload is stalled.
	StoreFailing      bool
	StoreFailingSince time.Time
	StoreError        string

	// LogBytes is the write-back log's size on disk, of LogLimitBytes.
	LogBytes, LogLimitBytes int64
	// PendingRecords and PendingBytes are logged mutations not yet
	// applied to the store (data bytes); OldestPending is the age of the
	// oldest.
	PendingRecords int
	PendingBytes   int64
	OldestPending  time.Duration
	// WritersWaiting are writes waiting for room in a full log.
	WritersWaiting int

	// Appends and AppendBytes count logged mutations; Syncs the
	// fdatasyncs that made them durable (group commit: fewer); RoomWaits
	// the writes that had to wait for room; DirectPuts the objects too
	// large for the log.
	Appends, AppendBytes, Syncs, RoomWaits, DirectPuts int64
	// Uploads counts store operations that applied the log (batches),
	// covering UploadedRecords records and UploadedBytes data bytes;
	// UploadFailures the failed attempts (retried); UploadBytesPerSec is
	// a smoothed rate; ImageFetches counts objects read back from the
	// store to rebuild them.
	Uploads, UploadedRecords, UploadedBytes, UploadFailures int64
	UploadBytesPerSec                                       float64
	ImageFetches                                            int64

	// LogReads are reads served from the write-back log. MemHits and
	// DiskHits are read-cache chunk hits, Misses chunk misses that went
	// to the store (StoreReadBytes), ReadTimeouts reads that gave up on
	// an unreachable store. MemEvictions and DiskEvictions count chunks
	// evicted from each tier.
	LogReads, MemHits, DiskHits, Misses, StoreReadBytes, ReadTimeouts int64
	MemEvictions, DiskEvictions                                       int64
}

// Stats returns a snapshot.
func (c *Cache) Stats() Stats {
	s := &c.stats
	out := Stats{
		Appends: s.appends.Load(), AppendBytes: s.appendBytes.Load(), Syncs: s.syncs.Load(),
		RoomWaits: s.roomWaits.Load(), DirectPuts: s.directPuts.Load(),
		Uploads: s.uploads.Load(), UploadedRecords: s.uploadedOps.Load(), UploadedBytes: s.uploadedBytes.Load(),
		UploadFailures: s.uploadFailures.Load(), ImageFetches: s.imageFetches.Load(),
		LogReads: s.logReads.Load(), MemHits: s.memHits.Load(), DiskHits: s.diskHits.Load(),
		Misses: s.misses.Load(), StoreReadBytes: s.innerReadBytes.Load(), ReadTimeouts: s.readTimeouts.Load(),
		MemEvictions: s.memEvictions.Load(), DiskEvictions: s.diskEvictions.Load(),
		LogLimitBytes: c.opts.LogBytes,
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out.Health = c.healthLocked()
	out.StoreFailing = c.storeFailingLocked()
	if c.mu.inner.failing {
		out.StoreFailingSince = c.mu.inner.since
		if c.mu.inner.lastErr != nil {
			out.StoreError = c.mu.inner.lastErr.Error()
		}
	}
	out.LogBytes = c.mu.usedBytes
	out.PendingRecords = len(c.mu.queue)
	out.PendingBytes = c.mu.queuedBytes
	if len(c.mu.queue) > 0 {
		out.OldestPending = time.Since(time.Unix(0, c.mu.queue[0].unixNano))
	}
	out.WritersWaiting = c.mu.waitingForRoom
	out.UploadBytesPerSec = c.mu.uploadRate
	if !c.mu.lastUpload.IsZero() && time.Since(c.mu.lastUpload) > 10*time.Second {
		out.UploadBytesPerSec = 0
	}
	return out
}
