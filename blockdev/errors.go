package blockdev

import (
	"errors"
	"fmt"
)

// Sentinel errors shared by every Device and by the stores below them. The
// SCSI layer maps them to sense data in one place (target/scsi); anything
// else is reported as a hardware error. Wrap them with %w to add context.
var (
	// ErrClosed: the Device (or store) was closed.
	ErrClosed = errors.New("blockdev: closed")
	// ErrOutOfRange: the request reaches past the end of the Device.
	ErrOutOfRange = errors.New("blockdev: range beyond end of device")
	// ErrUnaligned: an offset or length is not a multiple of the logical block size.
	ErrUnaligned = errors.New("blockdev: unaligned offset or length")
	// ErrReadOnly: the Device refuses writes.
	ErrReadOnly = errors.New("blockdev: read-only")
	// ErrNotSupported: an optional operation the Device cannot perform.
	ErrNotSupported = errors.New("blockdev: not supported")
	// ErrInUse: the operation conflicts with the Device's state (for
	// example shrinking below mapped data, or an exclusive lock held elsewhere).
	ErrInUse = errors.New("blockdev: in use")
	// ErrUnavailable: the backend is unreachable or timed out. Transient:
	// the SCSI layer answers with a status the initiator retries (BUSY),
	// never one that means the device is gone.
	ErrUnavailable = errors.New("blockdev: backend unavailable")
	// ErrNoSpace: the backend is out of space.
	ErrNoSpace = errors.New("blockdev: out of space")
	// ErrCorrupt: stored data or metadata failed validation (checksum,
	// format); the data cannot be returned. Maps to an unrecovered read error.
	ErrCorrupt = errors.New("blockdev: corrupt data")
)

// CheckRange validates a request against the geometry: off and length must be
// non-negative multiples of the logical block size and lie within the device.
func CheckRange(info Info, off, length int64) error {
	bs := int64(info.LogicalBlockSize)
	if off < 0 || length < 0 || bs <= 0 || off%bs != 0 || length%bs != 0 {
		return fmt.Errorf("%w: off=%d len=%d block=%d", ErrUnaligned, off, length, bs)
	}
	if off > info.SizeBytes || length > info.SizeBytes-off {
		return fmt.Errorf("%w: off=%d len=%d size=%d", ErrOutOfRange, off, length, info.SizeBytes)
	}
	return nil
}
