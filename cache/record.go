package cache

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/lunway/lunway/backend"
)

// A log record, little-endian, 8-byte aligned:
//
//	0   magic      u32  "LWC1" (recordMagic)
//	4   crc        u32  CRC-32C of bytes [8, 40+nameLen+dataLen)
//	8   seq        u64  position in the log (consecutive from 1)
//	16  kind       u8   1 Put, 2 Delete, 3 WriteAt
//	17  flags      u8   0
//	18  nameLen    u16  1..backend.MaxNameLen
//	20  dataLen    u32  0 for Delete; at most MaxRecordData
//	24  off        i64  WriteAt: object offset; else 0
//	32  unixNano   i64  when the record was appended
//	40  name       nameLen bytes
//	    data       dataLen bytes
//	    padding    zeros up to a multiple of 8
//
// The CRC covers everything after itself, so a record torn anywhere (a
// crash in the middle of its write) fails it.
const (
	recordMagic     = 0x3143574c // "LWC1" little-endian
	recordHeaderLen = 40
	// MaxRecordData bounds one record's data: larger WriteAts are split,
	// larger Puts bypass the log.
	MaxRecordData = 1 << 30
)

// recordKind is what a record does to its object.
type recordKind uint8

const (
	kindPut     recordKind = 1
	kindDelete  recordKind = 2
	kindWriteAt recordKind = 3
)

func (k recordKind) String() string {
	switch k {
	case kindPut:
		return "put"
	case kindDelete:
		return "delete"
	case kindWriteAt:
		return "writeat"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// recordHeader is a decoded header (without name and data).
type recordHeader struct {
	seq      uint64
	kind     recordKind
	nameLen  int
	dataLen  int64
	off      int64
	unixNano int64
	crc      uint32
}

// recordLen is a record's whole length in the log, padding included.
func recordLen(nameLen int, dataLen int64) int64 {
	return align8(recordHeaderLen + int64(nameLen) + dataLen)
}

func align8(n int64) int64 { return (n + 7) &^ 7 }

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// appendRecordHeader appends the header and name of a record for data
// (which the caller writes right after) and returns the buffer and the
// padding the record needs after the data. The CRC covers data too.
func appendRecordHeader(buf []byte, seq uint64, kind recordKind, name string, off int64, unixNano int64, data []byte) ([]byte, int) {
	start := len(buf)
	buf = append(buf, make([]byte, recordHeaderLen)...)
	h := buf[start:]
	binary.LittleEndian.PutUint32(h[0:], recordMagic)
	binary.LittleEndian.PutUint64(h[8:], seq)
	h[16] = byte(kind)
	h[17] = 0
	binary.LittleEndian.PutUint16(h[18:], uint16(len(name)))
	binary.LittleEndian.PutUint32(h[20:], uint32(len(data)))
	binary.LittleEndian.PutUint64(h[24:], uint64(off))
	binary.LittleEndian.PutUint64(h[32:], uint64(unixNano))
	buf = append(buf, name...)
	crc := crc32.Update(0, crcTable, buf[start+8:])
	crc = crc32.Update(crc, crcTable, data)
	binary.LittleEndian.PutUint32(buf[start+4:], crc)
	total := recordLen(len(name), int64(len(data)))
	pad := int(total - recordHeaderLen - int64(len(name)) - int64(len(data)))
	return buf, pad
}

// parseRecordHeader decodes and checks a header. It checks everything
// the header alone can tell (magic, kind, lengths); the CRC needs the
// name and data (checkRecord). It never panics and keeps no reference
// to b.
func parseRecordHeader(b []byte) (recordHeader, error) {
	if len(b) < recordHeaderLen {
		return recordHeader{}, fmt.Errorf("%w: record header of %d bytes", errTruncated, len(b))
	}
	if m := binary.LittleEndian.Uint32(b[0:]); m != recordMagic {
		return recordHeader{}, fmt.Errorf("%w: magic %#x", errBadRecord, m)
	}
	h := recordHeader{
		crc:      binary.LittleEndian.Uint32(b[4:]),
		seq:      binary.LittleEndian.Uint64(b[8:]),
		kind:     recordKind(b[16]),
		nameLen:  int(binary.LittleEndian.Uint16(b[18:])),
		dataLen:  int64(binary.LittleEndian.Uint32(b[20:])),
		off:      int64(binary.LittleEndian.Uint64(b[24:])),
		unixNano: int64(binary.LittleEndian.Uint64(b[32:])),
	}
	switch {
	case h.seq == 0:
		return h, fmt.Errorf("%w: sequence number 0", errBadRecord)
	case h.kind != kindPut && h.kind != kindDelete && h.kind != kindWriteAt:
		return h, fmt.Errorf("%w: kind %d", errBadRecord, b[16])
	case b[17] != 0:
		return h, fmt.Errorf("%w: flags %#x", errBadRecord, b[17])
	case h.nameLen == 0 || h.nameLen > backend.MaxNameLen:
		return h, fmt.Errorf("%w: name length %d", errBadRecord, h.nameLen)
	case h.dataLen > MaxRecordData:
		return h, fmt.Errorf("%w: data length %d", errBadRecord, h.dataLen)
	case h.kind == kindDelete && h.dataLen != 0:
		return h, fmt.Errorf("%w: delete with %d bytes of data", errBadRecord, h.dataLen)
	case h.off < 0 || h.kind != kindWriteAt && h.off != 0:
		return h, fmt.Errorf("%w: offset %d for %s", errBadRecord, h.off, h.kind)
	case h.kind == kindWriteAt && h.off > MaxObjectBytes-h.dataLen:
		return h, fmt.Errorf("%w: write of %d bytes at %d beyond the object size limit", errBadRecord, h.dataLen, h.off)
	}
	return h, nil
}

// checkRecord verifies a record's CRC and name given its header bytes
// (at least recordHeaderLen), name and data, and returns the name.
func checkRecord(h recordHeader, hdr, name, data []byte) (string, error) {
	if len(hdr) < recordHeaderLen || len(name) != h.nameLen || int64(len(data)) != h.dataLen {
		return "", fmt.Errorf("%w: record of seq %d is short", errTruncated, h.seq)
	}
	crc := crc32.Update(0, crcTable, hdr[8:recordHeaderLen])
	crc = crc32.Update(crc, crcTable, name)
	crc = crc32.Update(crc, crcTable, data)
	if crc != h.crc {
		return "", fmt.Errorf("%w: seq %d: checksum %#x, want %#x", errBadRecord, h.seq, crc, h.crc)
	}
	n := string(name)
	if err := backend.ValidName(n); err != nil {
		return "", fmt.Errorf("%w: seq %d: %w", errBadRecord, h.seq, err)
	}
	return n, nil
}

// decodeRecord decodes a whole record from the start of b: header, name,
// data (aliased into b; the caller copies what it keeps) and the record's
// length. For tests, fuzzing and tools; the log reads records in pieces.
func decodeRecord(b []byte) (h recordHeader, name string, data []byte, n int64, err error) {
	h, err = parseRecordHeader(b)
	if err != nil {
		return h, "", nil, 0, err
	}
	n = recordLen(h.nameLen, h.dataLen)
	if int64(len(b)) < n {
		return h, "", nil, 0, fmt.Errorf("%w: record of %d bytes, have %d", errTruncated, n, len(b))
	}
	nameEnd := recordHeaderLen + int64(h.nameLen)
	data = b[nameEnd : nameEnd+h.dataLen]
	name, err = checkRecord(h, b[:recordHeaderLen], b[recordHeaderLen:nameEnd], data)
	if err != nil {
		return h, "", nil, 0, err
	}
	for _, c := range b[nameEnd+h.dataLen : n] {
		if c != 0 {
			return h, "", nil, 0, fmt.Errorf("%w: seq %d: non-zero padding", errBadRecord, h.seq)
		}
	}
	return h, name, data, n, nil
}
