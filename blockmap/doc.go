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
package blockmap
