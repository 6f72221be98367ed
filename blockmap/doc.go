// Package blockmap implements Volume, the thin, log-structured,
// crash-safe block device beneath every Lunway LUN, on top of an
// object-shaped backend.Store. The on-store layout is an open format,
// documented in docs/FORMAT.md and encoded by package format.
//
// # Design
//
// Writes are appended to log segments (objects of about
// Options.SegmentSize): each segment is a sequence of self-describing
// records, a checksummed header listing the record's entries (write,
// unmap, copy-by-reference, GC move, map page) followed by the payload.
// The block map records, for every run of blocks, the segment and byte
// offset holding its data; runs not in the map read as zeros.
//
// The map is an LSM-like pair. In front, a bounded in-memory delta holds
// recent changes (per leaf, plus whole-leaf deallocations as ranges).
// Behind it, the committed map is a radix tree of immutable pages (leaf
// pages map 512 KiB of the volume; interior pages have 256 children)
// stored in meta segments and cached, decoded, in a ristretto cache. A
// checkpoint freezes the delta, rewrites only the pages it touches
// (copy-on-write up to the root), and commits a new checkpoint root; the
// records written since are the journal that opening replays. Memory is
// therefore bounded by the cache, the delta bound and the dirty-data
// bound, plus a per-segment usage row for every segment in use.
//
// Durability: a write is acknowledged once in memory; Flush (or FUA)
// writes the new tail of the open data segment in place when the store
// implements backend.Overwriter (one WriteAt; a torn tail fails its
// checksums on replay) and otherwise puts the open segment as a short
// sealed object. The volume is consistent after any prefix of its
// completed store operations: roots are committed only after everything
// they reference is durable, and objects are deleted only after a
// committed root (and every reader of an older one) no longer needs them.
//
// Snapshots freeze a committed root; segments a snapshot references are
// pinned. Clones start from a snapshot's root and read their origin's
// segments through a layer index; the origin snapshot cannot be deleted
// while clones exist. Garbage collection rewrites the live data of
// sparsely used, unpinned segments as conditional moves, and marks live
// pages of sparse meta segments for rewriting, so that the next
// checkpoint leaves them unreferenced; it is rate-limited.
//
// Check verifies a volume against the store: every page and extent
// reference lands in a valid record, nothing lies beyond the end, and
// the live-byte accounting of each segment adds up.
//
// # API
//
// Create, Open, OpenSnapshot (read-only), Clone, Delete and List manage
// volumes in a store; a Volume is a blockdev.Device with every optional
// capability (Unmapper, ZeroWriter, AllocationStatuser, Resizer,
// CompareAndWriter, CopyRanger, HealthReporter) plus Snapshot,
// Snapshots, DeleteSnapshot, Checkpoint, GC, Check, Describe and Stats.
// Options configure sizes, bounds and background work; nil means
// defaults. A volume must be open in one process at a time.
//
// # Memory
//
// A volume's memory is bounded by its options, not by its size: the page
// cache (CacheBytes, or a Cache shared between volumes), unflushed data
// (MaxDirtyBytes), the map delta (MaxDeltaExtents, about 80 bytes per
// extent, at most two deltas), a free list of segment buffers (at most 8
// segments), plus about 100 bytes per stored segment: some 25 MiB per
// TiB of data stored in 4 MiB segments. A daemon serving many volumes
// should share one Cache.
//
// # Errors
//
// Backend failures pass up wrapped, unchanged in kind: a store that is
// unreachable gives errors wrapping blockdev.ErrUnavailable, never
// corruption, and the volume recovers by itself when the store returns.
// Damaged objects give errors wrapping blockdev.ErrCorrupt that name the
// object (ObjectError).
package blockmap
