package iscsi

import (
	"errors"
	"fmt"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/target/initiator"
)

// Errors of this package. I/O errors wrap blockdev's sentinels (see
// statusError) so that callers handle an iSCSI LUN like any Device; the
// *initiator.StatusError with the target's sense stays in the chain.
var (
	// ErrURL: an iscsi:// URL is malformed.
	ErrURL = errors.New("iscsi: bad URL")
	// ErrTarget: the target sent data that breaks the SCSI standard.
	ErrTarget = errors.New("iscsi: bad answer from target")
	// ErrUnsupported: the logical unit is of a kind this Device does not
	// drive (not a direct-access block device, an odd block size).
	ErrUnsupported = errors.New("iscsi: unsupported logical unit")
	// ErrNoLUN: the target has no logical unit of that number.
	ErrNoLUN = errors.New("iscsi: no such logical unit")
	// ErrLostWrites: the connection was lost while writes acknowledged by
	// the target were not yet flushed; the target may have lost them (if
	// it crashed), so Flush cannot promise they are durable. Every later
	// Flush and Close report it too. Write the data again.
	ErrLostWrites = errors.New("iscsi: connection lost with unflushed writes; they may not be durable")
)

// SCSI status codes (SAM-5 5.3).
const (
	statusGood                = 0x00
	statusCheckCondition      = 0x02
	statusBusy                = 0x08
	statusReservationConflict = 0x18
	statusTaskSetFull         = 0x28
	statusACAActive           = 0x30
	statusTaskAborted         = 0x40
)

// class is how the Device reacts to a completed command.
type class uint8

const (
	classDone      class = iota // GOOD
	classFail                   // a final error
	classUA                     // unit attention: clear, refresh, retry once
	classBusy                   // retry with backoff for BusyTimeout
	classTransient              // retry a few times at once
)

// classify decides what a command's status and sense mean. err is the
// final error for classFail (and for the retry classes once retries run
// out): a blockdev sentinel wrapping the *initiator.StatusError.
func classify(status uint8, sense initiator.Sense) (class, error) {
	se := &initiator.StatusError{Status: status, Sense: sense}
	switch status {
	case statusGood:
		return classDone, nil
	case statusBusy, statusTaskSetFull, statusACAActive:
		return classBusy, fmt.Errorf("%w: %w", blockdev.ErrUnavailable, se)
	case statusReservationConflict:
		return classFail, fmt.Errorf("%w: reservation conflict: %w", blockdev.ErrInUse, se)
	case statusTaskAborted:
		return classTransient, fmt.Errorf("%w: %w", blockdev.ErrUnavailable, se)
	case statusCheckCondition:
	default:
		return classFail, fmt.Errorf("iscsi: %w", se)
	}
	asc := uint16(sense.ASC)<<8 | uint16(sense.ASCQ)
	switch sense.Key {
	case initiator.SenseUnitAttention:
		return classUA, fmt.Errorf("%w: %w", blockdev.ErrUnavailable, se)
	case initiator.SenseNotReady:
		// 04/03 (manual intervention) and 3A/xx (no medium) do not pass.
		if sense.ASC == 0x04 && sense.ASCQ != 0x03 {
			return classBusy, fmt.Errorf("%w: %w", blockdev.ErrUnavailable, se)
		}
		return classFail, fmt.Errorf("%w: %w", blockdev.ErrUnavailable, se)
	case initiator.SenseAbortedCommand:
		return classTransient, fmt.Errorf("%w: %w", blockdev.ErrUnavailable, se)
	case initiator.SenseIllegalRequest:
		switch {
		case asc == 0x2100: // LBA out of range
			return classFail, fmt.Errorf("%w: %w", blockdev.ErrOutOfRange, se)
		case asc == 0x2500: // logical unit not supported
			return classFail, fmt.Errorf("%w: %w", ErrNoLUN, se)
		case sense.ASC == 0x20, sense.ASC == 0x24, sense.ASC == 0x26:
			// Invalid opcode, invalid field in CDB or parameter list: the
			// target does not do what was asked (our CDBs are checked).
			return classFail, fmt.Errorf("%w: %w", blockdev.ErrNotSupported, se)
		}
	case initiator.SenseDataProtect:
		if asc == 0x2707 { // space allocation failed write protect
			return classFail, fmt.Errorf("%w: %w", blockdev.ErrNoSpace, se)
		}
		return classFail, fmt.Errorf("%w: %w", blockdev.ErrReadOnly, se)
	case initiator.SenseMediumError:
		return classFail, fmt.Errorf("%w: %w", blockdev.ErrCorrupt, se)
	}
	return classFail, fmt.Errorf("iscsi: %w", se)
}
