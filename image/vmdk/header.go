package vmdk

import (
	"encoding/binary"
	"fmt"

	"github.com/lunway/lunway/image"
)

// SparseHeader is the 512-byte header of a hosted sparse extent (little
// endian):
//
//	 0 magic "KDMV"        4 version          8 flags
//	12 capacity (sectors) 20 grainSize (sectors)
//	28 descriptorOffset   36 descriptorSize (sectors)
//	44 numGTEsPerGT       48 rgdOffset       56 gdOffset
//	64 overHead           72 uncleanShutdown
//	73 '\n' ' ' '\r' '\n' (line-ending test) 77 compressAlgorithm (u16)
//
// A streamOptimized extent stores gdOffset = GDAtEnd in the header and
// the real value in a footer (a copy of the header) near the end.
type SparseHeader struct {
	Version           uint32
	Flags             uint32
	Capacity          uint64
	GrainSize         uint64
	DescriptorOffset  uint64
	DescriptorSize    uint64
	NumGTEsPerGT      uint32
	RGDOffset         uint64
	GDOffset          uint64
	OverHead          uint64
	UncleanShutdown   bool
	CompressAlgorithm uint16
}

const (
	sector      = 512
	headerMagic = "KDMV"

	flagNewlineTest   = 1 << 0
	flagRedundantGT   = 1 << 1
	flagZeroGrainGTE  = 1 << 2
	flagCompressed    = 1 << 16
	flagMarkers       = 1 << 17
	compressionNone   = 0
	compressionDeflat = 1

	// GDAtEnd in a header's gdOffset says the grain directory is found
	// through the footer.
	GDAtEnd = 0xffffffffffffffff

	maxGrainSectors = 1 << 12 // 2 MiB grains
	maxGTEsPerGT    = 1 << 16
	maxDescriptor   = 1 << 20

	// Marker types of streamOptimized extents.
	markerEOS    = 0
	markerGT     = 1
	markerGD     = 2
	markerFooter = 3
)

// ParseSparseHeader decodes and checks a sparse extent header.
func ParseSparseHeader(b []byte) (*SparseHeader, error) {
	if len(b) < sector {
		return nil, image.Corruptf("vmdk: sparse header: %d bytes, need %d", len(b), sector)
	}
	if string(b[:4]) != headerMagic {
		return nil, fmt.Errorf("vmdk: sparse header: bad magic %q: %w", b[:4], image.ErrFormat)
	}
	le := binary.LittleEndian
	h := &SparseHeader{
		Version:           le.Uint32(b[4:]),
		Flags:             le.Uint32(b[8:]),
		Capacity:          le.Uint64(b[12:]),
		GrainSize:         le.Uint64(b[20:]),
		DescriptorOffset:  le.Uint64(b[28:]),
		DescriptorSize:    le.Uint64(b[36:]),
		NumGTEsPerGT:      le.Uint32(b[44:]),
		RGDOffset:         le.Uint64(b[48:]),
		GDOffset:          le.Uint64(b[56:]),
		OverHead:          le.Uint64(b[64:]),
		UncleanShutdown:   b[72] != 0,
		CompressAlgorithm: le.Uint16(b[77:]),
	}
	if h.Version < 1 || h.Version > 3 {
		return nil, image.Unsupportedf("vmdk: sparse extent version %d", h.Version)
	}
	if h.GrainSize == 0 || h.GrainSize > maxGrainSectors || h.GrainSize&(h.GrainSize-1) != 0 {
		return nil, image.Corruptf("vmdk: grain size %d sectors: must be a power of two up to %d", h.GrainSize, maxGrainSectors)
	}
	if h.NumGTEsPerGT == 0 || h.NumGTEsPerGT > maxGTEsPerGT {
		return nil, image.Corruptf("vmdk: numGTEsPerGT %d: must be 1..%d", h.NumGTEsPerGT, maxGTEsPerGT)
	}
	if h.Capacity > image.MaxVirtualSize/sector {
		return nil, image.Limitf("vmdk: capacity %d sectors", h.Capacity)
	}
	if h.DescriptorSize > maxDescriptor/sector {
		return nil, image.Limitf("vmdk: embedded descriptor of %d sectors", h.DescriptorSize)
	}
	if h.Flags&flagCompressed != 0 && h.CompressAlgorithm != compressionDeflat {
		return nil, image.Unsupportedf("vmdk: compression algorithm %d", h.CompressAlgorithm)
	}
	return h, nil
}

// Append encodes h as a 512-byte header appended to b.
func (h *SparseHeader) Append(b []byte) []byte {
	le := binary.LittleEndian
	start := len(b)
	b = append(b, headerMagic...)
	b = le.AppendUint32(b, h.Version)
	b = le.AppendUint32(b, h.Flags)
	b = le.AppendUint64(b, h.Capacity)
	b = le.AppendUint64(b, h.GrainSize)
	b = le.AppendUint64(b, h.DescriptorOffset)
	b = le.AppendUint64(b, h.DescriptorSize)
	b = le.AppendUint32(b, h.NumGTEsPerGT)
	b = le.AppendUint64(b, h.RGDOffset)
	b = le.AppendUint64(b, h.GDOffset)
	b = le.AppendUint64(b, h.OverHead)
	if h.UncleanShutdown {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = append(b, '\n', ' ', '\r', '\n')
	b = le.AppendUint16(b, h.CompressAlgorithm)
	for len(b)-start < sector {
		b = append(b, 0)
	}
	return b
}

// gtCoverage is the number of sectors one grain table maps.
func (h *SparseHeader) gtCoverage() uint64 { return h.GrainSize * uint64(h.NumGTEsPerGT) }

// numGTs is the number of grain tables (and grain directory entries).
func (h *SparseHeader) numGTs() uint64 {
	c := h.gtCoverage()
	return (h.Capacity + c - 1) / c
}

// marker is a streamOptimized marker: {value u64, size u32, type u32}.
// For a grain, value is its LBA and size the compressed length (the data
// follows at byte 12); for metadata, size is 0, value the number of
// sectors that follow the marker sector, and type says what they hold.
type marker struct {
	Value uint64
	Size  uint32
	Type  uint32
}

func parseMarker(b []byte) marker {
	le := binary.LittleEndian
	return marker{Value: le.Uint64(b), Size: le.Uint32(b[8:]), Type: le.Uint32(b[12:])}
}
