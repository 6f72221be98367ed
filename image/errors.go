package image

import (
	"errors"
	"fmt"
)

// Sentinel errors of every format package, tested with errors.Is. Format
// packages wrap them with the name of the structure at fault, for example
// "qcow2: L1 table offset 0x1234: not cluster aligned: image: corrupt".
var (
	// ErrCorrupt: a structure of the image is invalid (bad magic or
	// checksum, an offset past the end of the file, overlapping tables).
	ErrCorrupt = errors.New("image: corrupt")
	// ErrUnsupported: a valid image uses a feature this implementation
	// refuses (encryption, an external data file, zstd compression).
	ErrUnsupported = errors.New("image: unsupported feature")
	// ErrLimit: a size or count exceeds a sane limit (see the Max constants).
	ErrLimit = errors.New("image: limit exceeded")
	// ErrFormat: the data is not an image of the expected format.
	ErrFormat = errors.New("image: wrong format")
	// ErrNotSeekable: the writer needs an io.WriterAt for this format.
	ErrNotSeekable = errors.New("image: destination not seekable")
	// ErrOrder: a writer got data at an offset below one already written.
	ErrOrder = errors.New("image: write out of order")
	// ErrOutOfRange: a read or write reaches past the virtual size.
	ErrOutOfRange = errors.New("image: offset beyond virtual size")
	// ErrClosed: the reader or writer was closed.
	ErrClosed = errors.New("image: closed")
)

// Corruptf returns an error wrapping ErrCorrupt, prefixed with the format
// and the structure at fault.
func Corruptf(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrCorrupt)
}

// Unsupportedf returns an error wrapping ErrUnsupported.
func Unsupportedf(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrUnsupported)
}

// Limitf returns an error wrapping ErrLimit.
func Limitf(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrLimit)
}
