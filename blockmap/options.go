package blockmap

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/lunway/lunway/blockmap/format"
)

// Defaults of Options.
const (
	DefaultLogicalBlockSize   = 512
	DefaultPhysicalBlockSize  = 4096
	DefaultSegmentSize        = 4 << 20
	DefaultCacheBytes         = 64 << 20
	DefaultMaxDirtyBytes      = 64 << 20
	DefaultMaxDeltaExtents    = 256 << 10
	DefaultCheckpointInterval = 30 * time.Second
	DefaultMaxJournalBytes    = 1 << 30
	DefaultGCThreshold        = 0.5
	DefaultGCRateBytes        = 64 << 20
	DefaultGCInterval         = 2 * time.Second
	DefaultStoreTimeout       = 30 * time.Second
	// LeafBytes is how much of the volume one leaf page maps (the leaf
	// shift is derived from it and the block size at creation).
	LeafBytes = 512 << 10
	// DefaultFanoutShift gives interior pages 256 children.
	DefaultFanoutShift = 8
)

// Options configure a Volume. The zero value (or nil) means defaults.
// Fields marked "at creation" are recorded in the superblock by Create and
// ignored by Open.
type Options struct {
	// LogicalBlockSize (at creation) is 512 or 4096: the map's unit.
	LogicalBlockSize int
	// PhysicalBlockSize (at creation) is reported to initiators.
	PhysicalBlockSize int
	// SegmentSize is the size of log segments: sealed objects are about
	// this big (a Flush on a store without Overwriter seals early).
	// Create records it as the volume's nominal size; 0 on Open uses that.
	SegmentSize int64

	// CacheBytes bounds the cache of clean map pages (ristretto). Ignored
	// when Cache is set.
	CacheBytes int64
	// Cache, when set, is shared with other volumes; Close leaves it open.
	Cache *Cache
	// MaxDirtyBytes bounds write data acknowledged but not yet written
	// to the store; writers wait beyond it.
	MaxDirtyBytes int64
	// MaxDeltaExtents bounds the in-memory map changes: a checkpoint
	// starts at half of it and writers wait at the full bound.
	MaxDeltaExtents int
	// CheckpointInterval starts a checkpoint this long after the first
	// change since the last one. Negative disables timed checkpoints.
	CheckpointInterval time.Duration
	// MaxJournalBytes starts a checkpoint when this many bytes have been
	// logged since the last one (bounds replay time on open).
	MaxJournalBytes int64

	// GCThreshold: segments whose live fraction (of SegmentSize) is below
	// it are compacted.
	GCThreshold float64
	// GCRateBytes bounds garbage-collection I/O (bytes read plus written
	// per second) so that guest I/O keeps priority.
	GCRateBytes int64
	// GCInterval is how often the background collector looks for work.
	GCInterval time.Duration
	// DisableGC turns the background collector off (GC still runs on demand).
	DisableGC bool
	// DisableBackground turns off the background checkpointer and
	// collector; checkpoints then happen only on demand (Checkpoint,
	// Snapshot, Resize, Close) and when the delta bound forces one.
	DisableBackground bool

	// StoreTimeout bounds each background store write (sealing a
	// segment); a write that times out counts as the store being
	// unavailable and is retried.
	StoreTimeout time.Duration

	// ReadOnly opens without writing anything (no replay is persisted,
	// no collection, writes fail with blockdev.ErrReadOnly).
	ReadOnly bool
	// Logger receives warnings and lifecycle messages; nil discards them.
	Logger *slog.Logger
}

// Validate reports whether the options are usable.
func (o *Options) Validate() error {
	if o.LogicalBlockSize != 0 && o.LogicalBlockSize != 512 && o.LogicalBlockSize != 4096 {
		return fmt.Errorf("blockmap: LogicalBlockSize %d: must be 512 or 4096", o.LogicalBlockSize)
	}
	if p := o.PhysicalBlockSize; p != 0 {
		lbs := o.LogicalBlockSize
		if lbs == 0 {
			lbs = DefaultLogicalBlockSize
		}
		if p < lbs || p > 1<<20 || p&(p-1) != 0 {
			return fmt.Errorf("blockmap: PhysicalBlockSize %d: must be a power of two between %d and 1 MiB", p, lbs)
		}
	}
	if s := o.SegmentSize; s != 0 && (s < format.MinSegmentSize || s > format.MaxSegmentSize || s%4096 != 0) {
		return fmt.Errorf("blockmap: SegmentSize %d: must be a multiple of 4096 in [%d, %d]", s, format.MinSegmentSize, format.MaxSegmentSize)
	}
	if o.CacheBytes < 0 || o.MaxDirtyBytes < 0 || o.MaxDeltaExtents < 0 || o.MaxJournalBytes < 0 || o.GCRateBytes < 0 || o.GCInterval < 0 || o.StoreTimeout < 0 {
		return fmt.Errorf("blockmap: negative size, rate or interval in Options")
	}
	if o.CacheBytes != 0 && o.CacheBytes < 1<<20 {
		return fmt.Errorf("blockmap: CacheBytes %d: at least 1 MiB", o.CacheBytes)
	}
	if o.MaxDeltaExtents != 0 && o.MaxDeltaExtents < 64 {
		return fmt.Errorf("blockmap: MaxDeltaExtents %d: at least 64", o.MaxDeltaExtents)
	}
	if o.GCThreshold < 0 || o.GCThreshold >= 1 {
		return fmt.Errorf("blockmap: GCThreshold %v: must be in [0, 1)", o.GCThreshold)
	}
	return nil
}

// withDefaults returns a copy with zero fields set to defaults.
func (o *Options) withDefaults() Options {
	var out Options
	if o != nil {
		out = *o
	}
	if out.LogicalBlockSize == 0 {
		out.LogicalBlockSize = DefaultLogicalBlockSize
	}
	if out.PhysicalBlockSize == 0 {
		out.PhysicalBlockSize = max(DefaultPhysicalBlockSize, out.LogicalBlockSize)
	}
	if out.CacheBytes == 0 {
		out.CacheBytes = DefaultCacheBytes
	}
	if out.MaxDirtyBytes == 0 {
		out.MaxDirtyBytes = DefaultMaxDirtyBytes
	}
	if out.MaxDeltaExtents == 0 {
		out.MaxDeltaExtents = DefaultMaxDeltaExtents
	}
	if out.CheckpointInterval == 0 {
		out.CheckpointInterval = DefaultCheckpointInterval
	}
	if out.MaxJournalBytes == 0 {
		out.MaxJournalBytes = DefaultMaxJournalBytes
	}
	if out.GCThreshold == 0 {
		out.GCThreshold = DefaultGCThreshold
	}
	if out.GCRateBytes == 0 {
		out.GCRateBytes = DefaultGCRateBytes
	}
	if out.GCInterval == 0 {
		out.GCInterval = DefaultGCInterval
	}
	if out.StoreTimeout == 0 {
		out.StoreTimeout = DefaultStoreTimeout
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	return out
}
