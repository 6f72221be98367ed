// Package cache puts a durable local write-back log and a read cache in
// front of a slow backend.Store (S3, RADOS over a WAN, ...), as a Store
// decorator: a blockmap volume on a Cache flushes with one local
// fdatasync, keeps serving while the store is unreachable, and its store
// always holds a consistent (if older) volume.
//
// # Write-back log
//
// Put, Delete and WriteAt append a record to a log on local disk and
// return once it is durable (fdatasync, shared by concurrent writers:
// group commit). A single uploader applies the records to the store
// strictly in log order; a run of consecutive records on one object is
// applied as one store operation with the run's net effect (see
// upload.go). The store therefore only ever holds the state after some
// prefix of the log, and a Delete never overtakes the Put it follows
// (LSVD's argument: with the local disk lost, the store is still a
// consistent, older volume). Failed uploads are retried forever with
// backoff; nothing is dropped. Open replays the log: a torn record at its
// very end (a write that was never acknowledged) is cut off, anything
// else damaged fails Open, and uploads resume where they stopped.
//
// The log is bounded (Options.LogBytes). When it is full, writes wait for
// uploads to make room (back-pressure), at most Options.FullWait, and then
// fail with ErrLogFull, which wraps backend.ErrUnavailable so that the
// initiator retries. Objects too large for the log go to the store
// directly once the log before them is applied.
//
// The Cache implements backend.Overwriter even when the store does not:
// WriteAt is logged like any write, and the uploader rebuilds the object
// (the store's content, kept in memory between uploads, plus the writes)
// and puts it whole. A volume then flushes small appends to its open
// segment instead of sealing a short segment object on every flush; an
// object that is still growing at the end of the log is held back for
// Options.UploadHold so that it is not uploaded once per append.
//
// # Reads
//
// An object with pending records is read from the log (its "overlay",
// overlay.go), falling through to the store only for bytes no pending
// record covers. Everything else is read through a cache of clean chunks:
// a ristretto cache in memory above slots in a local file (readcache.go),
// with hit, miss and eviction counters. Uploaded content is written to
// the disk tier as it goes, so recently written data stays local.
//
// # Outages
//
// While the store fails, writes continue into the log until it is full,
// and reads are served from the log and the read cache. A read that needs
// the store retries it for at most Options.ReadTimeout and then fails with
// an error wrapping backend.ErrUnavailable (the SCSI layer answers BUSY,
// which initiators retry). When the store answers again, uploads resume
// in order with no operator action. Health reports ok, degraded (the
// store fails but the log absorbs writes, or writers wait for room) or
// unavailable (the log is full and the store down, or the local disk
// failed); transitions are logged once.
//
// # Files
//
//	Dir/LOCK         flock(2)ed while open
//	Dir/applied      the last record applied to the store (a hint)
//	Dir/log/*.log    the write-back log (wal.go has the layout)
//	Dir/read.cache   the on-disk read cache, recreated empty at Open
package cache
