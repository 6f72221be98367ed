package format

import "strconv"

// RecordMagic starts every record header.
const RecordMagic = "LUNWAYRC"

// Record limits.
const (
	// SectorSize is the unit of alignment of records: every record and
	// every payload starts at a multiple of it, so that a torn in-place
	// append (atomic per 512-byte sector) never mixes two records in one
	// sector.
	SectorSize = 512
	// RecordFixedLen is the fixed part of a record header.
	RecordFixedLen = 64
	// EntryLen is the size of one record entry.
	EntryLen = 32
	// MaxRecordHeaderLen bounds a record header.
	MaxRecordHeaderLen = 256 << 10
	// MaxRecordEntries is the most entries a header can hold.
	MaxRecordEntries = (MaxRecordHeaderLen - RecordFixedLen) / EntryLen
	// MaxPayloadLen bounds a record payload.
	MaxPayloadLen = MaxSegmentSize
)

// RecordKind says which stream wrote a record.
type RecordKind uint8

// Record kinds.
const (
	// RecordData holds guest writes, unmaps and copies by reference, in
	// the order the volume applied them.
	RecordData RecordKind = 1
	// RecordGC holds conditional moves made by garbage collection.
	RecordGC RecordKind = 2
	// RecordMeta holds map pages written by a checkpoint.
	RecordMeta RecordKind = 3
)

func (k RecordKind) String() string {
	switch k {
	case RecordData:
		return "data"
	case RecordGC:
		return "gc"
	case RecordMeta:
		return "meta"
	}
	return "RecordKind(" + strconv.Itoa(int(k)) + ")"
}

// EntryKind is the kind of one record entry.
type EntryKind uint8

// Entry kinds.
const (
	// EntryWrite: blocks [LBA, LBA+Count) now hold Count blocks of payload.
	EntryWrite EntryKind = 1
	// EntryUnmap: blocks [LBA, LBA+Count) are deallocated (read as zeros).
	EntryUnmap EntryKind = 2
	// EntryRef: blocks [LBA, LBA+Count) now hold the data at byte SrcOff of
	// segment SrcSeq of layer Layer (a copy by reference). No payload.
	EntryRef EntryKind = 3
	// EntryMove: if blocks [LBA, LBA+Count) still map to byte SrcOff of
	// segment SrcSeq (layer 0), block by block, they now map to this
	// entry's payload, which holds the same data.
	EntryMove EntryKind = 4
	// EntryPage: the payload holds a map page of Count bytes for the node
	// at tree level Level with index LBA.
	EntryPage EntryKind = 5
)

func (k EntryKind) String() string {
	switch k {
	case EntryWrite:
		return "write"
	case EntryUnmap:
		return "unmap"
	case EntryRef:
		return "ref"
	case EntryMove:
		return "move"
	case EntryPage:
		return "page"
	}
	return "EntryKind(" + strconv.Itoa(int(k)) + ")"
}

// Entry is one entry of a record header.
//
//	off len  field
//	  0   1  kind
//	  1   1  layer: source layer of Ref; 0 otherwise
//	  2   2  level: tree level of Page; 0 otherwise
//	  4   4  count: blocks (Write, Unmap, Ref, Move) or bytes (Page)
//	  8   8  first LBA (Write, Unmap, Ref, Move) or node index (Page)
//	 16   8  source segment seq (Ref, Move); 0 otherwise
//	 24   4  source byte offset (Ref, Move); 0 otherwise
//	 28   4  reserved, 0
type Entry struct {
	Kind   EntryKind
	Layer  uint8
	Level  uint16
	Count  uint32
	LBA    uint64
	SrcSeq uint64
	SrcOff uint32
}

// PayloadBytes is the number of payload bytes the entry carries.
func (e Entry) PayloadBytes(blockSize uint32) uint64 {
	switch e.Kind {
	case EntryWrite, EntryMove:
		return uint64(e.Count) * uint64(blockSize)
	case EntryPage:
		return uint64(e.Count)
	}
	return 0
}

// PutEntry encodes e into dst[:EntryLen].
func PutEntry(dst []byte, e Entry) {
	_ = dst[EntryLen-1]
	dst[0] = byte(e.Kind)
	dst[1] = e.Layer
	le.PutUint16(dst[2:], e.Level)
	le.PutUint32(dst[4:], e.Count)
	le.PutUint64(dst[8:], e.LBA)
	le.PutUint64(dst[16:], e.SrcSeq)
	le.PutUint32(dst[24:], e.SrcOff)
	le.PutUint32(dst[28:], 0)
}

// RecordHeader describes one record of a segment.
//
//	off len  field
//	  0   8  magic "LUNWAYRC"
//	  8   2  format version (1)
//	 10   1  record kind (1 data, 2 gc, 3 meta)
//	 11   1  reserved, 0
//	 12   4  header length H: a multiple of 512, at least 64+32N
//	 16  16  volume ID
//	 32   8  segment seq (must match the object's name)
//	 40   4  byte offset of this record in the segment (must match)
//	 44   4  entry count N
//	 48   4  payload length P: the entries' payload bytes rounded up to 512
//	 52   4  CRC-32C of the payload
//	 56   4  reserved, 0
//	 60   4  CRC-32C of bytes [0, 64+32N) with this field zero
//	 64 32N  entries
//	         zero padding to H; the payload (P bytes) follows
type RecordHeader struct {
	Kind       RecordKind
	HeaderLen  uint32
	ID         [16]byte
	Seq        uint64
	Offset     uint32
	PayloadLen uint32
	PayloadCRC uint32
	Entries    []Entry
}

// RecordHeaderLen is the smallest header length that holds n entries.
func RecordHeaderLen(n int) int {
	return roundUp(RecordFixedLen+n*EntryLen, SectorSize)
}

// EntriesFit is how many entries a header of length h holds.
func EntriesFit(h int) int { return (h - RecordFixedLen) / EntryLen }

func roundUp(n, to int) int { return (n + to - 1) / to * to }

// PadPayload rounds a payload length up to the sector size.
func PadPayload(n int) int { return roundUp(n, SectorSize) }

// PutRecordHeader encodes h into dst, which must be h.HeaderLen bytes,
// and computes the header checksum. Padding bytes are zeroed.
func PutRecordHeader(dst []byte, h *RecordHeader) {
	PutRecordHeaderEntries(dst, h, len(h.Entries))
	for i, e := range h.Entries {
		PutEntry(dst[RecordFixedLen+i*EntryLen:], e)
	}
	SealRecordHeader(dst, len(h.Entries))
}

// PutRecordHeaderEntries encodes the fixed part of h into dst for n
// entries that the caller writes itself with PutEntry at
// dst[RecordFixedLen+i*EntryLen:]; it zeroes the padding after them.
// SealRecordHeader then computes the checksum.
func PutRecordHeaderEntries(dst []byte, h *RecordHeader, n int) {
	copy(dst, RecordMagic)
	le.PutUint16(dst[8:], Version)
	dst[10] = byte(h.Kind)
	dst[11] = 0
	le.PutUint32(dst[12:], h.HeaderLen)
	copy(dst[16:32], h.ID[:])
	le.PutUint64(dst[32:], h.Seq)
	le.PutUint32(dst[40:], h.Offset)
	le.PutUint32(dst[44:], uint32(n))
	le.PutUint32(dst[48:], h.PayloadLen)
	le.PutUint32(dst[52:], h.PayloadCRC)
	le.PutUint32(dst[56:], 0)
	le.PutUint32(dst[60:], 0)
	clear(dst[RecordFixedLen+n*EntryLen : h.HeaderLen])
}

// SealRecordHeader computes the header checksum of a header with n entries.
func SealRecordHeader(dst []byte, n int) {
	le.PutUint32(dst[60:], 0)
	le.PutUint32(dst[60:], Checksum(dst[:RecordFixedLen+n*EntryLen]))
}

// PeekRecordHeaderLen reads the header length from the first
// RecordFixedLen bytes of a record, checking magic, version and bounds,
// so that a reader knows how much to read before DecodeRecordHeader.
func PeekRecordHeaderLen(b []byte) (int, error) {
	if len(b) < RecordFixedLen {
		return 0, corrupt("record header", "truncated")
	}
	if string(b[:8]) != RecordMagic {
		return 0, corrupt("record header", "bad magic")
	}
	if v := le.Uint16(b[8:]); v != Version {
		return 0, &VersionError{What: "record header", Version: v}
	}
	h := le.Uint32(b[12:])
	if h < SectorSize || h > MaxRecordHeaderLen || h%SectorSize != 0 {
		return 0, corrupt("record header", "bad header length")
	}
	return int(h), nil
}

// DecodeRecordHeader decodes and validates a record header: b must hold
// at least the header length PeekRecordHeaderLen reported. blockSize is
// the volume's logical block size (payload sizes depend on it). The
// payload checksum is not checked here (see CheckPayload).
func DecodeRecordHeader(b []byte, blockSize uint32) (*RecordHeader, error) {
	hl, err := PeekRecordHeaderLen(b)
	if err != nil {
		return nil, err
	}
	if len(b) < hl {
		return nil, corrupt("record header", "truncated")
	}
	if blockSize != 512 && blockSize != 4096 {
		return nil, corrupt("record header", "bad block size")
	}
	d := dec{b: b[:hl], off: 10, what: "record header"}
	h := &RecordHeader{HeaderLen: uint32(hl)}
	h.Kind = RecordKind(d.u8())
	d.zeros(1)
	d.u32() // header length, peeked
	h.ID = d.id()
	h.Seq = d.u64()
	h.Offset = d.u32()
	n := int(d.u32())
	h.PayloadLen = d.u32()
	h.PayloadCRC = d.u32()
	d.zeros(4)
	crc := d.u32()
	if d.err != nil {
		return nil, d.err
	}
	if h.Kind < RecordData || h.Kind > RecordMeta {
		return nil, corrupt("record header", "unknown record kind")
	}
	if n < 0 || n > EntriesFit(hl) {
		return nil, corrupt("record header", "entry count exceeds the header")
	}
	end := RecordFixedLen + n*EntryLen
	var tmp [4]byte
	sum := UpdateChecksum(Checksum(b[:60]), tmp[:])
	sum = UpdateChecksum(sum, b[64:end])
	if sum != crc {
		return nil, corrupt("record header", "checksum mismatch")
	}
	if h.PayloadLen%SectorSize != 0 || h.PayloadLen > MaxPayloadLen {
		return nil, corrupt("record header", "bad payload length")
	}
	if n > 0 {
		h.Entries = make([]Entry, n)
	}
	var payload uint64
	for i := range h.Entries {
		e := &h.Entries[i]
		if err := decodeEntry(b[RecordFixedLen+i*EntryLen:], e, h.Kind); err != nil {
			return nil, err
		}
		payload += e.PayloadBytes(blockSize)
		if payload > uint64(h.PayloadLen) {
			return nil, corrupt("record header", "entries exceed the payload")
		}
	}
	if uint64(PadPayload(int(payload))) != uint64(h.PayloadLen) {
		return nil, corrupt("record header", "payload length does not match the entries")
	}
	return h, nil
}

func decodeEntry(b []byte, e *Entry, rk RecordKind) error {
	e.Kind = EntryKind(b[0])
	e.Layer = b[1]
	e.Level = le.Uint16(b[2:])
	e.Count = le.Uint32(b[4:])
	e.LBA = le.Uint64(b[8:])
	e.SrcSeq = le.Uint64(b[16:])
	e.SrcOff = le.Uint32(b[24:])
	bad := func(reason string) error {
		return corrupt("record entry", e.Kind.String()+": "+reason)
	}
	if le.Uint32(b[28:]) != 0 {
		return bad("reserved field is not zero")
	}
	if e.Count == 0 {
		return bad("zero count")
	}
	switch e.Kind {
	case EntryWrite, EntryUnmap, EntryRef:
		if rk != RecordData {
			return bad("in a " + rk.String() + " record")
		}
	case EntryMove:
		if rk != RecordGC {
			return bad("in a " + rk.String() + " record")
		}
	case EntryPage:
		if rk != RecordMeta {
			return bad("in a " + rk.String() + " record")
		}
	default:
		return bad("unknown kind")
	}
	if e.Kind == EntryPage {
		if e.Layer != 0 || e.SrcSeq != 0 || e.SrcOff != 0 {
			return bad("nonzero source fields")
		}
		if int(e.Level) > MaxHeight || e.Count > MaxPageLen {
			return bad("level or length out of range")
		}
		return nil
	}
	if e.Level != 0 {
		return bad("nonzero level")
	}
	if e.LBA+uint64(e.Count) < e.LBA || e.LBA+uint64(e.Count) > MaxLBA {
		return bad("LBA range out of bounds")
	}
	switch e.Kind {
	case EntryWrite, EntryUnmap:
		if e.Layer != 0 || e.SrcSeq != 0 || e.SrcOff != 0 {
			return bad("nonzero source fields")
		}
	case EntryRef:
		if e.Layer >= MaxLayers {
			return bad("layer out of range")
		}
	case EntryMove:
		if e.Layer != 0 {
			return bad("nonzero layer")
		}
	}
	return nil
}

// MaxLBA bounds block addresses (2^50 blocks: 512 PiB of 512-byte blocks).
const MaxLBA = 1 << 50

// CheckPayload verifies a record's payload (h.PayloadLen bytes) against
// its checksum.
func CheckPayload(h *RecordHeader, payload []byte) error {
	if len(payload) != int(h.PayloadLen) {
		return corrupt("record payload", "truncated")
	}
	if Checksum(payload) != h.PayloadCRC {
		return corrupt("record payload", "checksum mismatch")
	}
	return nil
}
