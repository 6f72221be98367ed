package rbd

import (
	"fmt"
	"syscall"
	"time"

	"github.com/lunway/lunway/backend/rados"
	"github.com/lunway/lunway/blockdev"
)

// ErrTimeout: a request did not complete within Options.IOTimeout. It
// wraps blockdev.ErrUnavailable.
var ErrTimeout = fmt.Errorf("%w: rbd: request timed out", blockdev.ErrUnavailable)

// Error is a failed librbd request. It wraps the errno and the blockdev
// sentinel the errno maps to (see Sentinel).
type Error struct {
	// Op is the request ("read", "write", "flush", "open", ...).
	Op string
	// Off and Len are the byte range, when the request has one.
	Off, Len int64
	// Errno is what librbd returned, positive.
	Errno syscall.Errno
}

func (e *Error) Error() string {
	if e.Len == 0 {
		return fmt.Sprintf("rbd %s: %v (errno %d)", e.Op, e.Errno, int(e.Errno))
	}
	return fmt.Sprintf("rbd %s %d+%d: %v (errno %d)", e.Op, e.Off, e.Len, e.Errno, int(e.Errno))
}

// Unwrap returns the errno and the sentinel it maps to, if any.
func (e *Error) Unwrap() []error {
	if s := Sentinel(e.Errno); s != nil {
		return []error{e.Errno, s}
	}
	return []error{e.Errno}
}

// Sentinel maps a librbd errno to blockdev's sentinels: connectivity
// trouble and timeouts (rados.Transient) are blockdev.ErrUnavailable,
// ENOSPC and EDQUOT blockdev.ErrNoSpace, EROFS blockdev.ErrReadOnly;
// anything else has no sentinel (the SCSI layer reports a hardware error).
// ESHUTDOWN (this client was blocklisted: another gateway broke its lock,
// or an operator fenced it) is not transient for a device: retrying on
// this connection can never succeed, and the initiator should fail over.
func Sentinel(errno syscall.Errno) error {
	switch {
	case errno == syscall.ESHUTDOWN:
		return nil
	case rados.Transient(errno):
		return blockdev.ErrUnavailable
	case errno == syscall.ENOSPC || errno == syscall.EDQUOT:
		return blockdev.ErrNoSpace
	case errno == syscall.EROFS:
		return blockdev.ErrReadOnly
	}
	return nil
}

// timeoutError reports a request abandoned after d.
func timeoutError(op string, off, n int64, d time.Duration) error {
	return fmt.Errorf("rbd %s %d+%d: no answer from the cluster within %v: %w", op, off, n, d, ErrTimeout)
}
