package blockdev

import (
	"context"
	"strconv"
)

// Info describes a Device's geometry and properties. It may change over the
// life of a Device only through Resize (SizeBytes); callers that cache it
// must re-read it after a resize.
type Info struct {
	// SizeBytes is the capacity, a multiple of LogicalBlockSize.
	SizeBytes int64
	// LogicalBlockSize is the addressable unit in bytes (512 or 4096).
	// Every offset and length passed to a Device is a multiple of it.
	LogicalBlockSize int
	// PhysicalBlockSize is the preferred I/O unit in bytes: a power-of-two
	// multiple of LogicalBlockSize (SCSI reports the exponent).
	PhysicalBlockSize int
	// Thin reports that the Device allocates on write and can deallocate
	// (it implements Unmapper and AllocationStatuser): SCSI sets LBPME.
	Thin bool
	// ReadOnly devices refuse WriteAt with ErrReadOnly.
	ReadOnly bool
}

// Blocks returns the capacity in logical blocks.
func (i Info) Blocks() int64 {
	if i.LogicalBlockSize == 0 {
		return 0
	}
	return i.SizeBytes / int64(i.LogicalBlockSize)
}

// WriteFlags modify a single write.
type WriteFlags uint8

const (
	// FUA (force unit access) asks that this write be durable when WriteAt
	// returns: it survives a crash of the process and of the backend
	// connection. Writes acknowledged earlier without FUA need not be.
	FUA WriteFlags = 1 << iota
)

// Device is the storage under one logical unit. It is the only thing the
// SCSI target knows about storage.
//
// All methods may be called concurrently from many goroutines. Offsets and
// lengths are in bytes and must be multiples of Info().LogicalBlockSize;
// a request that is not gets ErrUnaligned, and one that reaches past
// SizeBytes gets ErrOutOfRange, in both cases before anything is touched.
//
// A Device has a volatile write cache: a WriteAt without FUA may be
// acknowledged before it is durable. After a Flush returns nil, every write
// that returned before Flush was called is durable. Concurrent writes to
// overlapping ranges land in some serial order; a write that has returned
// is seen by every read that starts after it.
//
// Errors are wrapped sentinels of this package (see errors.go), tested with
// errors.Is, so that one function in the SCSI layer can map them to sense.
type Device interface {
	// ReadAt fills p with the data at off. It either fills all of p and
	// returns nil, or returns an error; there is no partial success.
	// Ranges never written (or unmapped) read as zeros.
	ReadAt(ctx context.Context, p []byte, off int64) error

	// WriteAt writes p at off. On error some blocks of the range may hold
	// the new data and others the old, but no single logical block is torn.
	WriteAt(ctx context.Context, p []byte, off int64, flags WriteFlags) error

	// Flush makes every write that completed before the call durable.
	Flush(ctx context.Context) error

	// Info reports the current geometry.
	Info() Info

	// Close releases the Device. Pending writes are flushed first; a Device
	// that cannot flush returns the error but is closed anyway. Calls after
	// Close return ErrClosed.
	Close() error
}

// The optional capabilities below are found by type assertion, as in
// database/sql/driver. A decorator must implement a capability only when
// the Device it wraps does (blockdevtest checks it with its Capabilities
// helper), so that the SCSI layer never advertises a command it cannot
// perform.

// Unmapper deallocates ranges (SCSI UNMAP). Afterwards the range reads as
// zeros (the SCSI layer reports LBPRZ=1).
type Unmapper interface {
	Unmap(ctx context.Context, off, length int64) error
}

// ZeroWriter makes a range read as zeros without transferring a buffer
// (WRITE SAME with a zero block, or with the UNMAP bit). With unmap set the
// Device may deallocate the range instead of writing zeros; either way the
// range reads as zeros afterwards. FUA has WriteAt's meaning.
type ZeroWriter interface {
	WriteZeroes(ctx context.Context, off, length int64, unmap bool, flags WriteFlags) error
}

// ExtentState is the provisioning state of a range (SBC-3 GET LBA STATUS).
type ExtentState uint8

const (
	// Mapped ranges hold data written by the initiator.
	Mapped ExtentState = 0
	// Deallocated ranges were never written or were unmapped; they read as zeros.
	Deallocated ExtentState = 1
	// Anchored ranges have storage reserved but read as zeros.
	Anchored ExtentState = 2
)

func (s ExtentState) String() string {
	switch s {
	case Mapped:
		return "mapped"
	case Deallocated:
		return "deallocated"
	case Anchored:
		return "anchored"
	}
	return "unknown"
}

// Extent is a run of bytes in one provisioning state.
type Extent struct {
	Off, Len int64
	State    ExtentState
}

// AllocationStatuser reports provisioning (SCSI GET LBA STATUS).
type AllocationStatuser interface {
	// AllocationStatus describes [off, off+length) as consecutive extents
	// starting exactly at off, in order, without gaps. It may stop early
	// (cover less than length) but returns at least one extent when
	// length > 0 and off is in range.
	AllocationStatus(ctx context.Context, off, length int64) ([]Extent, error)
}

// Resizer changes the capacity online. Growing exposes zeros; shrinking
// may be refused with ErrInUse when data lies beyond the new end.
type Resizer interface {
	Resize(ctx context.Context, sizeBytes int64) error
}

// MiscompareError reports the first differing byte of a CompareAndWrite,
// relative to the start of the compared range.
type MiscompareError struct {
	Offset int64
}

func (e *MiscompareError) Error() string {
	return "blockdev: miscompare at byte offset " + strconv.FormatInt(e.Offset, 10)
}

// CompareAndWriter compares and writes atomically (SCSI COMPARE AND WRITE):
// if the range at off equals compare, data (len(data) == len(compare)) is
// written; otherwise nothing is written and a *MiscompareError is returned.
// No other write to the range may land between the compare and the write.
type CompareAndWriter interface {
	CompareAndWrite(ctx context.Context, compare, data []byte, off int64, flags WriteFlags) error
}

// CopyRanger copies within or between Devices without moving data through
// the caller (EXTENDED COPY). It returns ErrNotSupported, having changed
// nothing, when it cannot copy from src (for example src is another kind of
// Device); the caller then copies by reading and writing.
type CopyRanger interface {
	CopyRange(ctx context.Context, src Device, srcOff, dstOff, length int64) error
}

// Health is the coarse state of a Device's backing storage.
type Health uint8

const (
	// Healthy: the backend answers.
	Healthy Health = iota
	// Degraded: the Device answers but the backend does not fully (for
	// example writes are absorbed by a local cache while the store is down).
	Degraded
	// Unavailable: I/O that needs the backend fails retryably.
	Unavailable
)

func (h Health) String() string {
	switch h {
	case Healthy:
		return "ok"
	case Degraded:
		return "degraded"
	case Unavailable:
		return "unavailable"
	}
	return "unknown"
}

// HealthReporter is implemented by Devices whose backend can be unreachable.
type HealthReporter interface {
	Health() Health
}

// AsyncIO is implemented by Devices whose requests complete on their own,
// as librbd's do: the caller starts a plain read or write and is told when
// it is done, so that no goroutine sits waiting for each request. The SCSI
// layer uses it for READ and for WRITE without FUA; everything else goes
// through the Device's methods. A Device implementing it bounds the time
// of every request it starts (its I/O timeout), whatever the backend does.
type AsyncIO interface {
	// StartReadAt begins ReadAt(ctx, p, off). It returns false, having
	// done nothing, when it cannot start the request at once (every
	// request slot is busy, the range is invalid, the Device is closed);
	// the caller then uses ReadAt, which waits or reports the error.
	// Otherwise done.Done is called exactly once, with what ReadAt would
	// have returned, on any goroutine and possibly before StartReadAt
	// returns; p belongs to the Device until then. A request whose ctx
	// ends may be completed early with ctx's error.
	StartReadAt(ctx context.Context, p []byte, off int64, done Completion) bool

	// StartWriteAt begins WriteAt(ctx, p, off, 0) in the same way. The
	// Device copies p or keeps it until done.Done is called.
	StartWriteAt(ctx context.Context, p []byte, off int64, done Completion) bool
}

// Completion receives the result of a request started through AsyncIO.
// Done must not block: it runs on the Device's completion goroutine.
type Completion interface {
	Done(err error)
}
