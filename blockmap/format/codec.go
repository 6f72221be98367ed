package format

import (
	"encoding/binary"
	"hash/crc32"
)

// Version is the format version this package reads and writes. Every
// top-level structure carries it; anything else is refused with a
// *VersionError.
const Version = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum is the CRC-32C of b, the checksum used everywhere in the format.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// UpdateChecksum continues a CRC-32C over more bytes.
func UpdateChecksum(crc uint32, b []byte) uint32 { return crc32.Update(crc, castagnoli, b) }

var le = binary.LittleEndian

// dec is a bounds-checked little-endian reader. After the first failure
// every read returns zero and err stays set, so a decoder checks once.
type dec struct {
	b    []byte
	off  int
	what string
	err  error
}

func (d *dec) fail(reason string) {
	if d.err == nil {
		d.err = corrupt(d.what, reason)
	}
}

func (d *dec) need(n int) bool {
	if d.err != nil {
		return false
	}
	if n < 0 || len(d.b)-d.off < n {
		d.fail("truncated")
		return false
	}
	return true
}

func (d *dec) u8() uint8 {
	if !d.need(1) {
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

func (d *dec) u16() uint16 {
	if !d.need(2) {
		return 0
	}
	v := le.Uint16(d.b[d.off:])
	d.off += 2
	return v
}

func (d *dec) u32() uint32 {
	if !d.need(4) {
		return 0
	}
	v := le.Uint32(d.b[d.off:])
	d.off += 4
	return v
}

func (d *dec) u64() uint64 {
	if !d.need(8) {
		return 0
	}
	v := le.Uint64(d.b[d.off:])
	d.off += 8
	return v
}

func (d *dec) bytes(n int) []byte {
	if !d.need(n) {
		return nil
	}
	v := d.b[d.off : d.off+n]
	d.off += n
	return v
}

func (d *dec) id() (id [16]byte) {
	copy(id[:], d.bytes(16))
	return id
}

// zeros consumes n reserved bytes, which must be zero.
func (d *dec) zeros(n int) {
	for _, c := range d.bytes(n) {
		if c != 0 {
			d.fail("reserved field is not zero")
			return
		}
	}
}

func (d *dec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.off += n
	return v
}

// name reads a u8-length-prefixed name and validates it.
func (d *dec) name() string {
	n := int(d.u8())
	s := string(d.bytes(n))
	if d.err == nil {
		if err := ValidName(s); err != nil {
			d.fail("bad name: " + err.Error())
		}
	}
	return s
}

func appendName(b []byte, s string) []byte {
	b = append(b, byte(len(s)))
	return append(b, s...)
}

// checkFramed validates the framing shared by the top-level objects:
// magic, version, reserved, total length at offset 12 and a trailing
// CRC-32C over everything before it. It returns the body without the CRC.
func checkFramed(b []byte, magic, what string, maxLen int) ([]byte, error) {
	if len(b) < 20 {
		return nil, corrupt(what, "truncated")
	}
	if string(b[:8]) != magic {
		return nil, corrupt(what, "bad magic")
	}
	if v := le.Uint16(b[8:]); v != Version {
		return nil, &VersionError{What: what, Version: v}
	}
	total := le.Uint32(b[12:])
	if total < 20 || int64(total) > int64(maxLen) || int64(total) != int64(len(b)) {
		return nil, corrupt(what, "bad total length")
	}
	body := b[:total-4]
	if Checksum(body) != le.Uint32(b[total-4:]) {
		return nil, corrupt(what, "checksum mismatch")
	}
	return body, nil
}

// startFramed appends magic, version, reserved and a length placeholder.
func startFramed(b []byte, magic string) (out []byte, start int) {
	start = len(b)
	b = append(b, magic...)
	b = le.AppendUint16(b, Version)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, 0)
	return b, start
}

// endFramed fills in the total length and appends the CRC.
func endFramed(b []byte, start int) []byte {
	total := len(b) - start + 4
	le.PutUint32(b[start+12:], uint32(total))
	return le.AppendUint32(b, Checksum(b[start:]))
}
