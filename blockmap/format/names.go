package format

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxNameLen bounds volume and snapshot names.
const MaxNameLen = 64

// ValidName checks a volume or snapshot name: 1 to MaxNameLen bytes of
// [A-Za-z0-9._-], starting with a letter or digit. Names never contain '/',
// so that every object of a volume lies under "<name>/" and no volume's
// prefix is another's.
func ValidName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w: %q: length %d not in 1..%d", ErrInvalidName, name, len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return fmt.Errorf("%w: %q must start with a letter or digit", ErrInvalidName, name)
		}
		if !alnum && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("%w: %q has byte %#x (allowed: A-Z a-z 0-9 . _ -)", ErrInvalidName, name, c)
		}
	}
	return nil
}

// Object names of a volume V. Sequence numbers and generations are 16
// lower-case hex digits, so that lexical order is numeric order.
//
//	V/super              superblock (written once, at creation)
//	V/ckpt/<gen>         checkpoint roots; the highest valid one is current
//	V/seg/<seq>          segments (data, GC and map-page records)
//	V/snap/<snapshot>    snapshot records
//	V/clone/<clone>      marker: volume <clone> was cloned from a snapshot of V

// SuperblockName is the object holding a volume's superblock.
func SuperblockName(vol string) string { return vol + "/super" }

// CheckpointPrefix is the prefix of a volume's checkpoint roots.
func CheckpointPrefix(vol string) string { return vol + "/ckpt/" }

// CheckpointName names the checkpoint root of generation gen.
func CheckpointName(vol string, gen uint64) string { return CheckpointPrefix(vol) + hex16(gen) }

// SegmentPrefix is the prefix of a volume's segments.
func SegmentPrefix(vol string) string { return vol + "/seg/" }

// SegmentName names segment seq of vol.
func SegmentName(vol string, seq uint64) string { return SegmentPrefix(vol) + hex16(seq) }

// SnapshotPrefix is the prefix of a volume's snapshot records.
func SnapshotPrefix(vol string) string { return vol + "/snap/" }

// SnapshotName names the record of snapshot snap of vol.
func SnapshotName(vol, snap string) string { return SnapshotPrefix(vol) + snap }

// ClonePrefix is the prefix of the clone markers in an origin volume.
func ClonePrefix(origin string) string { return origin + "/clone/" }

// CloneName names the marker of clone in its origin volume's namespace.
func CloneName(origin, clone string) string { return ClonePrefix(origin) + clone }

// ParseNumbered parses the 16-hex-digit suffix of a checkpoint or segment
// object name after prefix.
func ParseNumbered(prefix, name string) (uint64, bool) {
	s, ok := strings.CutPrefix(name, prefix)
	if !ok || len(s) != 16 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 16, 64)
	return n, err == nil
}

func hex16(n uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[n&15]
		n >>= 4
	}
	return string(b[:])
}
