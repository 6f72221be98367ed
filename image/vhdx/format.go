package vhdx

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/lunway/lunway/image"
)

// GUID is a Microsoft GUID as stored on disk (the first three fields
// little endian).
type GUID [16]byte

// mustGUID parses "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" into on-disk
// order. It is used for the constants below only.
func mustGUID(s string) GUID {
	var hex []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '-' {
			hex = append(hex, s[i])
		}
	}
	var raw [16]byte
	for i := range raw {
		var v byte
		for _, c := range hex[2*i : 2*i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= c - '0'
			case c >= 'a' && c <= 'f':
				v |= c - 'a' + 10
			case c >= 'A' && c <= 'F':
				v |= c - 'A' + 10
			}
		}
		raw[i] = v
	}
	var g GUID
	g[0], g[1], g[2], g[3] = raw[3], raw[2], raw[1], raw[0]
	g[4], g[5] = raw[5], raw[4]
	g[6], g[7] = raw[7], raw[6]
	copy(g[8:], raw[8:])
	return g
}

// Known region and metadata item GUIDs.
var (
	guidBAT            = mustGUID("2DC27766-F623-4200-9D64-115E9BFD4A08")
	guidMetadata       = mustGUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
	guidFileParameters = mustGUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
	guidVirtualSize    = mustGUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
	guidPage83         = mustGUID("BECA12AB-B2E6-4523-93EF-C309E000C746")
	guidLogicalSector  = mustGUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
	guidPhysicalSector = mustGUID("CDA348C7-445D-4471-9CC9-E9885251C556")
	guidParentLocator  = mustGUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
)

const (
	kib = 1 << 10
	mib = 1 << 20

	fileIDSignature = "vhdxfile"
	header1Offset   = 64 * kib
	header2Offset   = 128 * kib
	headerBytes     = 4 * kib
	region1Offset   = 192 * kib
	region2Offset   = 256 * kib
	regionBytes     = 64 * kib

	maxRegionEntries   = 2047
	maxMetadataEntries = 2047
	metadataTableBytes = 64 * kib

	minBlockSize = 1 * mib
	maxBlockSize = 256 * mib

	// BAT entry states.
	payloadNotPresent     = 0
	payloadUndefined      = 1
	payloadZero           = 2
	payloadUnmapped       = 3
	payloadFullyPresent   = 6
	payloadPartialPresent = 7
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc computes the CRC-32C of b with the 4-byte checksum field at [at,
// at+4) taken as zero.
func crc(b []byte, at int) uint32 {
	var zero [4]byte
	c := crc32.Update(0, castagnoli, b[:at])
	c = crc32.Update(c, castagnoli, zero[:])
	return crc32.Update(c, castagnoli, b[at+4:])
}

// Header is one of the two 4 KiB headers:
//
//	 0 "head"  4 checksum  8 sequence number
//	16 file write GUID  32 data write GUID  48 log GUID
//	64 log version u16  66 version u16  68 log length u32  72 log offset u64
type Header struct {
	Sequence      uint64
	FileWriteGUID GUID
	DataWriteGUID GUID
	LogGUID       GUID
	LogVersion    uint16
	Version       uint16
	LogLength     uint32
	LogOffset     uint64
}

// ParseHeader decodes one header and checks its signature and checksum.
func ParseHeader(b []byte) (*Header, error) {
	if len(b) < headerBytes {
		return nil, image.Corruptf("vhdx: header: %d bytes, need %d", len(b), headerBytes)
	}
	b = b[:headerBytes]
	if string(b[:4]) != "head" {
		return nil, image.Corruptf("vhdx: header: bad signature %q", b[:4])
	}
	le := binary.LittleEndian
	if sum, want := crc(b, 4), le.Uint32(b[4:]); sum != want {
		return nil, image.Corruptf("vhdx: header checksum 0x%08x, computed 0x%08x", want, sum)
	}
	h := &Header{
		Sequence:   le.Uint64(b[8:]),
		LogVersion: le.Uint16(b[64:]),
		Version:    le.Uint16(b[66:]),
		LogLength:  le.Uint32(b[68:]),
		LogOffset:  le.Uint64(b[72:]),
	}
	copy(h.FileWriteGUID[:], b[16:])
	copy(h.DataWriteGUID[:], b[32:])
	copy(h.LogGUID[:], b[48:])
	if h.Version != 1 {
		return nil, image.Unsupportedf("vhdx: header version %d", h.Version)
	}
	return h, nil
}

// Append encodes h as a 4 KiB header with its checksum.
func (h *Header) Append(b []byte) []byte {
	le := binary.LittleEndian
	start := len(b)
	b = append(b, "head"...)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint64(b, h.Sequence)
	b = append(b, h.FileWriteGUID[:]...)
	b = append(b, h.DataWriteGUID[:]...)
	b = append(b, h.LogGUID[:]...)
	b = le.AppendUint16(b, h.LogVersion)
	b = le.AppendUint16(b, h.Version)
	b = le.AppendUint32(b, h.LogLength)
	b = le.AppendUint64(b, h.LogOffset)
	b = append(b, make([]byte, headerBytes-(len(b)-start))...)
	le.PutUint32(b[start+4:], crc(b[start:], 4))
	return b
}

// Region is a region table entry.
type Region struct {
	GUID     GUID
	Offset   uint64
	Length   uint32
	Required bool
}

// ParseRegionTable decodes a 64 KiB region table:
//
//	0 "regi"  4 checksum  8 entry count  12 reserved
//	16 entries of 32 bytes: GUID, file offset u64, length u32, flags u32
func ParseRegionTable(b []byte) ([]Region, error) {
	if len(b) < regionBytes {
		return nil, image.Corruptf("vhdx: region table: %d bytes, need %d", len(b), regionBytes)
	}
	b = b[:regionBytes]
	if string(b[:4]) != "regi" {
		return nil, image.Corruptf("vhdx: region table: bad signature %q", b[:4])
	}
	le := binary.LittleEndian
	if sum, want := crc(b, 4), le.Uint32(b[4:]); sum != want {
		return nil, image.Corruptf("vhdx: region table checksum 0x%08x, computed 0x%08x", want, sum)
	}
	n := le.Uint32(b[8:])
	if n > maxRegionEntries {
		return nil, image.Corruptf("vhdx: region table: %d entries, at most %d", n, maxRegionEntries)
	}
	out := make([]Region, n)
	for i := range out {
		e := b[16+32*i:]
		copy(out[i].GUID[:], e)
		out[i].Offset = le.Uint64(e[16:])
		out[i].Length = le.Uint32(e[24:])
		out[i].Required = le.Uint32(e[28:])&1 != 0
	}
	return out, nil
}

// appendRegionTable encodes a region table with its checksum.
func appendRegionTable(b []byte, regions []Region) []byte {
	le := binary.LittleEndian
	start := len(b)
	b = append(b, "regi"...)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, uint32(len(regions)))
	b = le.AppendUint32(b, 0)
	for _, r := range regions {
		b = append(b, r.GUID[:]...)
		b = le.AppendUint64(b, r.Offset)
		b = le.AppendUint32(b, r.Length)
		var f uint32
		if r.Required {
			f = 1
		}
		b = le.AppendUint32(b, f)
	}
	b = append(b, make([]byte, regionBytes-(len(b)-start))...)
	le.PutUint32(b[start+4:], crc(b[start:], 4))
	return b
}

// MetadataItem is a metadata table entry; Offset is relative to the
// metadata region.
type MetadataItem struct {
	GUID     GUID
	Offset   uint32
	Length   uint32
	User     bool
	Virtual  bool
	Required bool
}

// ParseMetadataTable decodes the metadata table at the start of the
// metadata region:
//
//	0 "metadata"  8 reserved u16  10 entry count u16  12 reserved (20)
//	32 entries of 32 bytes: item GUID, offset u32, length u32, flags u32, reserved
func ParseMetadataTable(b []byte) ([]MetadataItem, error) {
	if len(b) < 32 {
		return nil, image.Corruptf("vhdx: metadata table: %d bytes", len(b))
	}
	if string(b[:8]) != "metadata" {
		return nil, image.Corruptf("vhdx: metadata table: bad signature %q", b[:8])
	}
	le := binary.LittleEndian
	n := int(le.Uint16(b[10:]))
	if n > maxMetadataEntries || 32+32*n > len(b) {
		return nil, image.Corruptf("vhdx: metadata table: %d entries", n)
	}
	out := make([]MetadataItem, n)
	for i := range out {
		e := b[32+32*i:]
		copy(out[i].GUID[:], e)
		out[i].Offset = le.Uint32(e[16:])
		out[i].Length = le.Uint32(e[20:])
		f := le.Uint32(e[24:])
		out[i].User, out[i].Virtual, out[i].Required = f&1 != 0, f&2 != 0, f&4 != 0
	}
	return out, nil
}

// chunkRatio is the number of payload blocks per sector bitmap block.
func chunkRatio(blockSize, logicalSector uint32) uint64 {
	return (uint64(1) << 23) * uint64(logicalSector) / uint64(blockSize)
}

// batIndex returns the BAT index of payload block i.
func batIndex(i, ratio uint64) uint64 { return i + i/ratio }

// batEntries returns the number of BAT entries of a non-differencing disk.
func batEntries(payloadBlocks, ratio uint64) uint64 {
	if payloadBlocks == 0 {
		return 0
	}
	return payloadBlocks + (payloadBlocks-1)/ratio
}

func (g GUID) String() string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", binary.LittleEndian.Uint32(g[:]), binary.LittleEndian.Uint16(g[4:]),
		binary.LittleEndian.Uint16(g[6:]), g[8:10], g[10:])
}
