package cache

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults of Options.
const (
	DefaultLogBytes       = 4 << 30
	DefaultMaxLogFile     = 64 << 20
	DefaultReadDiskBytes  = 4 << 30
	DefaultReadMemBytes   = 256 << 20
	DefaultChunkBytes     = 128 << 10
	DefaultReadTimeout    = 10 * time.Second
	DefaultFullWait       = 10 * time.Second
	DefaultUploadHold     = 5 * time.Second
	DefaultUploadTimeout  = 60 * time.Second
	DefaultStallTimeout   = 5 * time.Second
	DefaultRetryMinDelay  = 100 * time.Millisecond
	DefaultRetryMaxDelay  = 5 * time.Second
	DefaultImageBytes     = 64 << 20
	DefaultMaxUploadBatch = 256 << 20

	// MinLogBytes is the smallest write-back log.
	MinLogBytes = 1 << 20
	// MaxObjectBytes bounds the objects the Cache handles.
	MaxObjectBytes = 1 << 40
)

// Options configure a Cache. Dir is required; the zero value of every
// other field means its default.
type Options struct {
	// Dir holds the write-back log, its state and the on-disk read
	// cache. One Cache uses a directory at a time (it is locked).
	Dir string

	// LogBytes bounds the write-back log on disk. When it is full, writes
	// wait for uploads to free room (back-pressure), at most FullWait.
	LogBytes int64
	// LogFileBytes is the size at which the log moves to a new file;
	// files are deleted once every record in them is uploaded. Default
	// min(64 MiB, LogBytes/8).
	LogFileBytes int64
	// FullWait bounds how long a write waits for room in a full log
	// before it fails with ErrLogFull (which wraps backend.ErrUnavailable,
	// so that the initiator retries).
	FullWait time.Duration

	// ReadDiskBytes bounds the on-disk read cache of clean object data;
	// negative disables the read cache (both tiers).
	ReadDiskBytes int64
	// ReadMemBytes bounds the in-memory tier (ristretto) above it;
	// negative disables it.
	ReadMemBytes int64
	// ChunkBytes is the unit of the read cache: a power of two from 4 KiB
	// to 4 MiB.
	ChunkBytes int64
	// ReadTimeout bounds how long a read that needs the store waits
	// while it is unreachable before failing with an error wrapping
	// backend.ErrUnavailable (the SCSI layer answers BUSY).
	ReadTimeout time.Duration

	// UploadHold is how long an object written by WriteAt may wait at the
	// end of the log for more writes before it is uploaded whole (S3 has
	// no append: every upload sends the whole object). Negative uploads
	// at once.
	UploadHold time.Duration
	// UploadTimeout bounds one attempt to apply an operation to the store.
	UploadTimeout time.Duration
	// StallTimeout: an upload attempt in flight for longer counts as the
	// store failing, for Health (a hung store fails nothing for a while).
	StallTimeout time.Duration
	// RetryMinDelay and RetryMaxDelay shape the backoff between failed
	// uploads (exponential, jittered). Uploads are retried forever.
	RetryMinDelay, RetryMaxDelay time.Duration
	// ImageBytes bounds the memory that holds the current content of
	// objects being built by WriteAt (so that each upload need not read
	// the object back from the store).
	ImageBytes int64
	// MaxUploadBatch bounds the log bytes coalesced into one upload.
	MaxUploadBatch int64

	// CloseDrain is how long Close waits for pending uploads before it
	// leaves them in the log for the next Open.
	CloseDrain time.Duration

	// FS replaces the operating system's file system (tests).
	FS FS
	// Logger receives state changes (health transitions, replay, errors);
	// nil discards them. Nothing is logged per operation.
	Logger *slog.Logger
}

// Validate reports whether the options are usable.
func (o *Options) Validate() error {
	if o.Dir == "" {
		return errors.New("cache: Dir is required")
	}
	if o.LogBytes != 0 && o.LogBytes < MinLogBytes {
		return fmt.Errorf("cache: LogBytes %d: at least %d", o.LogBytes, MinLogBytes)
	}
	if o.LogFileBytes < 0 || o.LogBytes != 0 && o.LogFileBytes > o.LogBytes/2 {
		return fmt.Errorf("cache: LogFileBytes %d: must be positive and at most half of LogBytes", o.LogFileBytes)
	}
	if c := o.ChunkBytes; c != 0 && (c < 4096 || c > 4<<20 || c&(c-1) != 0) {
		return fmt.Errorf("cache: ChunkBytes %d: a power of two from 4 KiB to 4 MiB", c)
	}
	chunk := o.ChunkBytes
	if chunk == 0 {
		chunk = DefaultChunkBytes
	}
	if o.ReadDiskBytes > 0 && o.ReadDiskBytes < 16*chunk {
		return fmt.Errorf("cache: ReadDiskBytes %d: at least 16 chunks", o.ReadDiskBytes)
	}
	if o.ReadMemBytes > 0 && o.ReadMemBytes < 1<<20 {
		return fmt.Errorf("cache: ReadMemBytes %d: at least 1 MiB", o.ReadMemBytes)
	}
	if o.FullWait < 0 || o.ReadTimeout < 0 || o.UploadTimeout < 0 || o.StallTimeout < 0 || o.RetryMinDelay < 0 ||
		o.RetryMaxDelay < 0 || o.ImageBytes < 0 || o.MaxUploadBatch < 0 || o.CloseDrain < 0 {
		return errors.New("cache: negative duration or size in Options")
	}
	return nil
}

func (o *Options) withDefaults() Options {
	var out Options
	if o != nil {
		out = *o
	}
	if out.LogBytes == 0 {
		out.LogBytes = DefaultLogBytes
	}
	if out.LogFileBytes == 0 {
		out.LogFileBytes = min(DefaultMaxLogFile, out.LogBytes/8)
	}
	if out.FullWait == 0 {
		out.FullWait = DefaultFullWait
	}
	if out.ChunkBytes == 0 {
		out.ChunkBytes = DefaultChunkBytes
	}
	if out.ReadDiskBytes == 0 {
		out.ReadDiskBytes = DefaultReadDiskBytes
	}
	if out.ReadMemBytes == 0 {
		out.ReadMemBytes = DefaultReadMemBytes
	}
	if out.ReadTimeout == 0 {
		out.ReadTimeout = DefaultReadTimeout
	}
	if out.UploadHold == 0 {
		out.UploadHold = DefaultUploadHold
	}
	if out.UploadTimeout == 0 {
		out.UploadTimeout = DefaultUploadTimeout
	}
	if out.StallTimeout == 0 {
		out.StallTimeout = DefaultStallTimeout
	}
	if out.RetryMinDelay == 0 {
		out.RetryMinDelay = DefaultRetryMinDelay
	}
	if out.RetryMaxDelay == 0 {
		out.RetryMaxDelay = DefaultRetryMaxDelay
	}
	if out.ImageBytes == 0 {
		out.ImageBytes = DefaultImageBytes
	}
	if out.MaxUploadBatch == 0 {
		out.MaxUploadBatch = DefaultMaxUploadBatch
	}
	if out.FS == nil {
		out.FS = OSFS{}
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	return out
}

// bypassBytes: Puts larger than this skip the log (they would not fit
// beside the rest); they wait for the log to drain and go to the store.
func (o *Options) bypassBytes() int64 { return min(o.LogBytes/2, MaxRecordData) }

// splitBytes: WriteAts larger than this are logged as several records.
func (o *Options) splitBytes() int64 { return min(o.LogBytes/4, 64<<20) }
