package vhd

import (
	"encoding/binary"
	"fmt"

	"github.com/lunway/lunway/image"
)

// Footer is the 512-byte VHD footer (big endian):
//
//	 0 cookie "conectix"   8 features        12 file format version
//	16 data offset        24 time stamp      28 creator application
//	32 creator version    36 creator host OS 40 original size
//	48 current size       56 geometry (cylinders u16, heads u8, sectors u8)
//	60 disk type          64 checksum        68 unique id (16)
//	84 saved state        85 reserved (427)
type Footer struct {
	Features       uint32
	Version        uint32
	DataOffset     uint64
	Timestamp      uint32
	CreatorApp     [4]byte
	CreatorVersion uint32
	CreatorHostOS  uint32
	OriginalSize   uint64
	CurrentSize    uint64
	Cylinders      uint16
	Heads          uint8
	SectorsPerCyl  uint8
	DiskType       uint32
	Checksum       uint32
	UniqueID       [16]byte
	SavedState     uint8
}

const (
	footerSize   = 512
	footerCookie = "conectix"
	headerCookie = "cxsparse"
	headerSize   = 1024

	diskFixed        = 2
	diskDynamic      = 3
	diskDifferencing = 4

	noDataOffset = 0xffffffffffffffff
	unallocated  = 0xffffffff

	maxCHS = 65535 * 16 * 255
)

// checksum is the ones' complement of the byte sum, skipping the checksum
// field at [at, at+4).
func checksum(b []byte, at int) uint32 {
	var s uint32
	for i, c := range b {
		if i < at || i >= at+4 {
			s += uint32(c)
		}
	}
	return ^s
}

// ParseFooter decodes and checks a footer.
func ParseFooter(b []byte) (*Footer, error) {
	if len(b) < footerSize {
		return nil, image.Corruptf("vhd: footer: %d bytes, need %d", len(b), footerSize)
	}
	b = b[:footerSize]
	if string(b[:8]) != footerCookie {
		return nil, fmt.Errorf("vhd: footer: bad cookie %q: %w", b[:8], image.ErrFormat)
	}
	be := binary.BigEndian
	f := &Footer{
		Features:       be.Uint32(b[8:]),
		Version:        be.Uint32(b[12:]),
		DataOffset:     be.Uint64(b[16:]),
		Timestamp:      be.Uint32(b[24:]),
		CreatorVersion: be.Uint32(b[32:]),
		CreatorHostOS:  be.Uint32(b[36:]),
		OriginalSize:   be.Uint64(b[40:]),
		CurrentSize:    be.Uint64(b[48:]),
		Cylinders:      be.Uint16(b[56:]),
		Heads:          b[58],
		SectorsPerCyl:  b[59],
		DiskType:       be.Uint32(b[60:]),
		Checksum:       be.Uint32(b[64:]),
		SavedState:     b[84],
	}
	copy(f.CreatorApp[:], b[28:32])
	copy(f.UniqueID[:], b[68:84])
	if sum := checksum(b, 64); sum != f.Checksum {
		return nil, image.Corruptf("vhd: footer checksum 0x%08x, computed 0x%08x", f.Checksum, sum)
	}
	if f.CurrentSize > image.MaxVirtualSize {
		return nil, image.Limitf("vhd: current size %d", f.CurrentSize)
	}
	switch f.DiskType {
	case diskFixed, diskDynamic:
	case diskDifferencing:
		return nil, image.Unsupportedf("vhd: differencing disk; merge it with its parent first")
	default:
		return nil, image.Corruptf("vhd: disk type %d", f.DiskType)
	}
	return f, nil
}

// VirtualSize returns the disk size as the major implementations read
// it: the creators known to mean the current size field (Hyper-V "win ",
// Disk2vhd "d2v ", qemu with force_size "qem2", XenServer "tap\0",
// XenConverter "CTXS") get it; all others (Virtual PC "vpc ", older qemu
// "qemu", unknown tools) get the CHS geometry's size, unless the geometry
// is the maximum one, which cannot describe larger disks.
func (f *Footer) VirtualSize() int64 {
	chs := uint64(f.Cylinders) * uint64(f.Heads) * uint64(f.SectorsPerCyl)
	switch string(f.CreatorApp[:]) {
	case "win ", "d2v ", "qem2", "tap\x00", "CTXS":
		return int64(f.CurrentSize)
	}
	if chs == maxCHS || chs == 0 {
		return int64(f.CurrentSize)
	}
	return int64(chs * 512)
}

// Append encodes f with a fresh checksum.
func (f *Footer) Append(b []byte) []byte {
	be := binary.BigEndian
	start := len(b)
	b = append(b, footerCookie...)
	b = be.AppendUint32(b, f.Features)
	b = be.AppendUint32(b, f.Version)
	b = be.AppendUint64(b, f.DataOffset)
	b = be.AppendUint32(b, f.Timestamp)
	b = append(b, f.CreatorApp[:]...)
	b = be.AppendUint32(b, f.CreatorVersion)
	b = be.AppendUint32(b, f.CreatorHostOS)
	b = be.AppendUint64(b, f.OriginalSize)
	b = be.AppendUint64(b, f.CurrentSize)
	b = be.AppendUint16(b, f.Cylinders)
	b = append(b, f.Heads, f.SectorsPerCyl)
	b = be.AppendUint32(b, f.DiskType)
	b = be.AppendUint32(b, 0) // checksum, below
	b = append(b, f.UniqueID[:]...)
	b = append(b, f.SavedState)
	b = append(b, make([]byte, footerSize-(len(b)-start))...)
	be.PutUint32(b[start+64:], checksum(b[start:], 64))
	return b
}

// Geometry computes the CHS geometry for a size (the algorithm of the
// VHD specification's appendix).
func Geometry(size int64) (cyl uint16, heads, spt uint8) {
	total := min(size/512, maxCHS)
	var h, s, cth int64
	if total >= 65535*16*63 {
		s, h = 255, 16
		cth = total / s
	} else {
		s = 17
		cth = total / s
		h = max((cth+1023)/1024, 4)
		if cth >= h*1024 || h > 16 {
			s, h = 31, 16
			cth = total / s
		}
		if cth >= h*1024 {
			s, h = 63, 16
			cth = total / s
		}
	}
	return uint16(cth / h), uint8(h), uint8(s)
}

// DynamicHeader is the 1024-byte dynamic disk header (big endian):
//
//	 0 cookie "cxsparse"  8 data offset (unused)  16 table offset (BAT)
//	24 header version    28 max table entries    32 block size
//	36 checksum          40 parent unique id     56 parent time stamp
//	64 parent unicode name (512) 576 parent locators (8 x 24)
type DynamicHeader struct {
	TableOffset     uint64
	Version         uint32
	MaxTableEntries uint32
	BlockSize       uint32
	Checksum        uint32
}

const (
	minBlockSize = 512 * 8 // one bitmap byte's worth, at least
	maxBlockSize = 256 << 20
)

// ParseDynamicHeader decodes and checks a dynamic disk header.
func ParseDynamicHeader(b []byte) (*DynamicHeader, error) {
	if len(b) < headerSize {
		return nil, image.Corruptf("vhd: dynamic header: %d bytes, need %d", len(b), headerSize)
	}
	b = b[:headerSize]
	if string(b[:8]) != headerCookie {
		return nil, image.Corruptf("vhd: dynamic header: bad cookie %q", b[:8])
	}
	be := binary.BigEndian
	h := &DynamicHeader{
		TableOffset:     be.Uint64(b[16:]),
		Version:         be.Uint32(b[24:]),
		MaxTableEntries: be.Uint32(b[28:]),
		BlockSize:       be.Uint32(b[32:]),
		Checksum:        be.Uint32(b[36:]),
	}
	if sum := checksum(b, 36); sum != h.Checksum {
		return nil, image.Corruptf("vhd: dynamic header checksum 0x%08x, computed 0x%08x", h.Checksum, sum)
	}
	if h.BlockSize < minBlockSize || h.BlockSize > maxBlockSize || h.BlockSize%512 != 0 || h.BlockSize&(h.BlockSize-1) != 0 {
		return nil, image.Corruptf("vhd: block size %d: must be a power of two from %d to %d", h.BlockSize, minBlockSize, maxBlockSize)
	}
	if uint64(h.MaxTableEntries)*4 > image.MaxTableBytes {
		return nil, image.Limitf("vhd: block allocation table of %d entries", h.MaxTableEntries)
	}
	return h, nil
}

// Append encodes h with a fresh checksum.
func (h *DynamicHeader) Append(b []byte) []byte {
	be := binary.BigEndian
	start := len(b)
	b = append(b, headerCookie...)
	b = be.AppendUint64(b, noDataOffset)
	b = be.AppendUint64(b, h.TableOffset)
	b = be.AppendUint32(b, h.Version)
	b = be.AppendUint32(b, h.MaxTableEntries)
	b = be.AppendUint32(b, h.BlockSize)
	b = append(b, make([]byte, headerSize-(len(b)-start))...)
	be.PutUint32(b[start+36:], checksum(b[start:], 36))
	return b
}
