package blockmap

import (
	"sync/atomic"
	"unsafe"
)

// counters are the volume's running totals, updated without locks.
type counters struct {
	guestReadOps, guestReadBytes     atomic.Int64
	guestWriteOps, guestWriteBytes   atomic.Int64
	guestUnmapOps, guestUnmapBytes   atomic.Int64
	flushes                          atomic.Int64
	backendReadOps, backendReadBytes atomic.Int64
	backendWriteOps                  atomic.Int64
	backendWriteBytes                atomic.Int64
	backendDeletes                   atomic.Int64
	checkpoints                      atomic.Int64
	gcRuns, gcSegments               atomic.Int64
	gcBytesMoved, gcPagesMarked      atomic.Int64
	segmentsFreed, bytesFreed        atomic.Int64
	cacheHits, cacheMisses           atomic.Int64
}

// Stats is a snapshot of a volume's counters and state, for metrics.
type Stats struct {
	// Guest I/O since open.
	GuestReadOps, GuestReadBytes   int64
	GuestWriteOps, GuestWriteBytes int64
	GuestUnmapOps, GuestUnmapBytes int64
	Flushes                        int64
	// Backend I/O since open (segments, map pages, checkpoints).
	BackendReadOps, BackendReadBytes   int64
	BackendWriteOps, BackendWriteBytes int64
	BackendDeletes                     int64
	// WriteAmplification is BackendWriteBytes / GuestWriteBytes since
	// open (0 before the first write).
	WriteAmplification float64
	// LifetimeGuestBytes and LifetimeBackendBytes count writes over the
	// volume's life (persisted in checkpoints).
	LifetimeGuestBytes, LifetimeBackendBytes int64

	// LiveBytes is what the committed map references in the volume's own
	// segments (data and map pages); StoredBytes what those segments
	// occupy. Their ratio is the space efficiency GC works on.
	LiveBytes, StoredBytes int64
	Segments               int
	Snapshots              int
	Generation             uint64

	Checkpoints       int64
	GCRuns            int64
	GCSegments        int64 // segments compacted
	GCBytesMoved      int64
	GCPagesRewritten  int64 // live map pages of sparse meta segments marked for rewriting
	SegmentsFreed     int64
	BytesFreed        int64
	CacheHits         int64
	CacheMisses       int64
	DeltaExtents      int   // map changes held in memory
	DirtyBytes        int64 // write data not yet in the store
	CacheBytes        int64 // estimated memory of cached pages
	MemoryEstimate    int64 // cache + segment buffers + delta + segment table
	ErrorsOutstanding bool  // the last write to the store failed
}

// Stats returns a snapshot of the volume's counters.
func (v *Volume) Stats() Stats {
	c := &v.stats
	s := Stats{
		GuestReadOps: c.guestReadOps.Load(), GuestReadBytes: c.guestReadBytes.Load(),
		GuestWriteOps: c.guestWriteOps.Load(), GuestWriteBytes: c.guestWriteBytes.Load(),
		GuestUnmapOps: c.guestUnmapOps.Load(), GuestUnmapBytes: c.guestUnmapBytes.Load(),
		Flushes:        c.flushes.Load(),
		BackendReadOps: c.backendReadOps.Load(), BackendReadBytes: c.backendReadBytes.Load(),
		BackendWriteOps: c.backendWriteOps.Load(), BackendWriteBytes: c.backendWriteBytes.Load(),
		BackendDeletes: c.backendDeletes.Load(),
		Checkpoints:    c.checkpoints.Load(),
		GCRuns:         c.gcRuns.Load(), GCSegments: c.gcSegments.Load(), GCBytesMoved: c.gcBytesMoved.Load(), GCPagesRewritten: c.gcPagesMarked.Load(),
		SegmentsFreed: c.segmentsFreed.Load(), BytesFreed: c.bytesFreed.Load(),
		CacheHits: c.cacheHits.Load(), CacheMisses: c.cacheMisses.Load(),
	}
	if s.GuestWriteBytes > 0 {
		s.WriteAmplification = float64(s.BackendWriteBytes) / float64(s.GuestWriteBytes)
	}
	v.mu.RLock()
	s.LifetimeGuestBytes = v.mu.lifetimeGuest + s.GuestWriteBytes
	s.LifetimeBackendBytes = v.mu.lifetimeBackend + s.BackendWriteBytes
	for _, m := range v.mu.segs {
		s.LiveBytes += m.live
		s.StoredBytes += m.size
	}
	s.Segments = len(v.mu.segs)
	s.Snapshots = len(v.mu.snaps)
	s.Generation = v.mu.gen
	s.DeltaExtents = v.mu.active.size()
	for _, f := range v.mu.frozen {
		s.DeltaExtents += f.size()
	}
	s.DirtyBytes = v.mu.dirtyBytes
	s.ErrorsOutstanding = v.mu.ioErr != nil
	var inMem int64
	for _, w := range v.mu.mem {
		inMem += int64(cap(w.buf))
	}
	v.mu.RUnlock()
	s.CacheBytes = v.cache.UsedBytes()
	const (
		deltaEntryBytes = int64(unsafe.Sizeof(dext{})) + 16 // plus slice and map overhead
		segEntryBytes   = int64(unsafe.Sizeof(segMeta{})) + 48
	)
	pooled := int64(len(v.bufs.free)) * int64(v.bufs.size)
	s.MemoryEstimate = s.CacheBytes + inMem + pooled + int64(s.DeltaExtents)*deltaEntryBytes + int64(s.Segments)*segEntryBytes
	return s
}
