package format

import (
	"errors"
	"strconv"

	"github.com/lunway/lunway/blockdev"
)

// ErrUnsupportedVersion: an object carries a format version this code
// does not know. Opening such a volume is refused rather than guessed at.
var ErrUnsupportedVersion = errors.New("blockmap/format: unsupported format version")

// ErrInvalidName: a volume or snapshot name breaks the naming rules.
var ErrInvalidName = errors.New("blockmap/format: invalid name")

// CorruptError reports a structure that failed validation. It wraps
// blockdev.ErrCorrupt.
type CorruptError struct {
	// What names the structure ("superblock", "record header", "leaf page").
	What string
	// Reason says what is wrong.
	Reason string
}

func (e *CorruptError) Error() string {
	return "blockmap/format: corrupt " + e.What + ": " + e.Reason
}

// Unwrap makes errors.Is(err, blockdev.ErrCorrupt) hold.
func (e *CorruptError) Unwrap() error { return blockdev.ErrCorrupt }

func corrupt(what, reason string) error { return &CorruptError{What: what, Reason: reason} }

// VersionError reports an unknown format version. It wraps
// ErrUnsupportedVersion.
type VersionError struct {
	What    string
	Version uint16
}

func (e *VersionError) Error() string {
	return "blockmap/format: " + e.What + " has format version " + strconv.Itoa(int(e.Version)) +
		"; this build reads version " + strconv.Itoa(Version) + " only"
}

// Unwrap makes errors.Is(err, ErrUnsupportedVersion) hold.
func (e *VersionError) Unwrap() error { return ErrUnsupportedVersion }
