package image

import (
	"bytes"
	"context"
	"io"
)

// Format names a disk-image format.
type Format string

// The formats Lunway reads and writes. The names are qemu-img's.
const (
	Raw   Format = "raw"
	QCOW2 Format = "qcow2"
	VMDK  Format = "vmdk"
	VHD   Format = "vpc"
	VHDX  Format = "vhdx"
)

// ParseFormat maps a user-facing name (qemu-img's names and common
// aliases) to a Format.
func ParseFormat(s string) (Format, bool) {
	switch s {
	case "raw", "img":
		return Raw, true
	case "qcow2":
		return QCOW2, true
	case "vmdk":
		return VMDK, true
	case "vpc", "vhd":
		return VHD, true
	case "vhdx":
		return VHDX, true
	}
	return "", false
}

// Limits every reader enforces on top of the file-size bounds.
const (
	// MaxVirtualSize is the largest virtual disk accepted (64 TiB, VHDX's
	// own maximum).
	MaxVirtualSize = 64 << 40
	// MaxTableBytes caps any single table held in memory (an L1 table, a
	// block allocation table, a grain directory).
	MaxTableBytes = 256 << 20
	// MaxChainDepth caps a chain of backing files, so that a loop of
	// images naming each other ends with an error.
	MaxChainDepth = 16
	// MaxCompressedCluster caps the input of one compressed cluster.
	MaxCompressedCluster = 4 << 20
)

// ExtentKind is the allocation state of a range in an image.
type ExtentKind uint8

const (
	// Hole: nothing is stored for the range; it reads as zeros.
	Hole ExtentKind = iota
	// Zero: the image records the range as zeros explicitly (a qcow2 zero
	// cluster, a VHDX ZERO block); it reads as zeros.
	Zero
	// Data: the image stores data for the range (which may still happen
	// to be zeros).
	Data
)

func (k ExtentKind) String() string {
	switch k {
	case Hole:
		return "hole"
	case Zero:
		return "zero"
	case Data:
		return "data"
	}
	return "unknown"
}

// Extent is a run of bytes of the virtual disk in one allocation state.
type Extent struct {
	Off, Len int64
	Kind     ExtentKind
}

// End returns Off+Len.
func (e Extent) End() int64 { return e.Off + e.Len }

// Reader is an open disk image.
//
// ReadAt follows io.ReaderAt and may be called concurrently from many
// goroutines; it returns io.EOF only for reads reaching past Size. Ranges
// the image does not store read as zeros (or from the backing file).
// Errors wrap the sentinels of this package, or the error of the
// underlying file.
type Reader interface {
	io.ReaderAt
	// Format reports the image format.
	Format() Format
	// Size reports the virtual disk size in bytes.
	Size() int64
	// Map describes [off, off+length) as consecutive extents in order,
	// starting exactly at off, without gaps, merged where adjacent extents
	// share a kind. It is computed from the format's tables (and those of
	// backing files) without reading data. It may be called concurrently.
	Map(ctx context.Context, off, length int64) ([]Extent, error)
	// Close releases the image and its backing files.
	Close() error
}

// Writer creates a disk image.
//
// WriteAt stores p at virtual offset off. Successive calls must not go
// backwards: off must be at least the end of the previous call (ErrOrder
// otherwise). Ranges never written are holes and read as zeros; writers
// may also leave all-zero data as holes. WriteAt is not safe for
// concurrent use. Close finishes the image (tables, footers) and reports
// the first error; an image whose Close failed is not valid.
type Writer interface {
	WriteAt(p []byte, off int64) (int, error)
	// Size reports the virtual disk size.
	Size() int64
	// Close finishes the image. It does not close the destination.
	Close() error
}

// CheckRead validates a ReadAt request against a virtual size: it returns
// the number of bytes that can be read (len(p) clipped at size) and
// io.EOF when the request is clipped.
func CheckRead(p []byte, off, size int64) (n int, eof error) {
	if off < 0 {
		return 0, ErrOutOfRange
	}
	if off >= size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	if int64(len(p)) > size-off {
		return int(size - off), io.EOF
	}
	return len(p), nil
}

// CheckMap validates a Map request and clips length at size.
func CheckMap(off, length, size int64) (int64, error) {
	if off < 0 || length < 0 || off > size {
		return 0, ErrOutOfRange
	}
	return min(length, size-off), nil
}

// ExtentList accumulates extents, merging adjacent ones of one kind.
type ExtentList []Extent

// Add appends [off, off+n) of kind k. Extents must be added in order and
// contiguously.
func (l *ExtentList) Add(off, n int64, k ExtentKind) {
	if n <= 0 {
		return
	}
	if i := len(*l) - 1; i >= 0 && (*l)[i].Kind == k && (*l)[i].End() == off {
		(*l)[i].Len += n
		return
	}
	*l = append(*l, Extent{Off: off, Len: n, Kind: k})
}

// IsZero reports whether b holds only zero bytes.
func IsZero(b []byte) bool {
	// b is all zeros when its first byte is zero and every byte equals the
	// one before it; bytes.Equal compares with wide vector loads.
	return len(b) == 0 || (b[0] == 0 && bytes.Equal(b[1:], b[:len(b)-1]))
}

// ReadFull reads len(p) bytes at off from r, treating a short read as
// corruption of the structure named by what.
func ReadFull(r io.ReaderAt, p []byte, off int64, what string) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		return Corruptf("%s at offset %d: short read (%d of %d bytes)", what, off, n, len(p))
	}
	return err
}
