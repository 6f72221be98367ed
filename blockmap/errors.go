package blockmap

import (
	"errors"
	"fmt"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockmap/format"
)

var (
	// ErrNotFound: the volume or snapshot does not exist.
	ErrNotFound = errors.New("blockmap: not found")
	// ErrExists: a volume or snapshot of that name already exists.
	ErrExists = errors.New("blockmap: already exists")
	// ErrInvalidName: a volume or snapshot name breaks the naming rules
	// (1-64 bytes of [A-Za-z0-9._-], starting with a letter or digit).
	ErrInvalidName = format.ErrInvalidName
	// ErrUnsupportedVersion: the volume was written in a format version
	// this build does not read.
	ErrUnsupportedVersion = format.ErrUnsupportedVersion
	// ErrCheck: Check found an inconsistency (the error also wraps
	// blockdev.ErrCorrupt and names the object).
	ErrCheck = errors.New("blockmap: check failed")
)

// ObjectError reports a failure concerning one backend object: which
// object, where in it, and the cause (a corruption error wraps
// blockdev.ErrCorrupt; a backend error its own sentinel).
type ObjectError struct {
	Object string
	Offset int64 // -1 when not about a position
	Err    error
}

func (e *ObjectError) Error() string {
	if e.Offset >= 0 {
		return fmt.Sprintf("blockmap: %s at %d: %v", e.Object, e.Offset, e.Err)
	}
	return fmt.Sprintf("blockmap: %s: %v", e.Object, e.Err)
}

func (e *ObjectError) Unwrap() error { return e.Err }

func objErr(object string, off int64, err error) error {
	return &ObjectError{Object: object, Offset: off, Err: err}
}

// corruptf makes a corruption error about an object.
func corruptf(object string, off int64, format string, args ...any) error {
	return objErr(object, off, fmt.Errorf("%w: "+format, append([]any{blockdev.ErrCorrupt}, args...)...))
}
