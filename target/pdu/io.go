package pdu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Hard limits of the wire format.
const (
	// MaxDataSegmentLength is the largest DataSegmentLength the 24-bit
	// field can carry.
	MaxDataSegmentLength = 1<<24 - 1
	// MaxAHSLength is the largest TotalAHSLength in bytes (255 words).
	MaxAHSLength = 255 * 4
	// DigestLen is the length of a CRC32C digest.
	DigestLen = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C returns the iSCSI digest of p (RFC 7143 13.1, Castagnoli).
func CRC32C(p []byte) uint32 { return crc32.Checksum(p, castagnoli) }

// updateCRC continues a digest over p.
func updateCRC(crc uint32, p []byte) uint32 { return crc32.Update(crc, castagnoli, p) }

// AppendDigest appends a digest as it is sent: least significant byte first
// (RFC 7143 B.4: 32 zero bytes digest to aa 36 91 8a on the wire).
func AppendDigest(dst []byte, crc uint32) []byte {
	return binary.LittleEndian.AppendUint32(dst, crc)
}

// PadLen returns the padding that follows n data bytes.
func PadLen(n int) int { return -n & 3 }

var zeroPad [4]byte

// AppendHeader sets b's TotalAHSLength and DataSegmentLength from len(ahs)
// and dataLen and appends the BHS, the AHS (padded to a word) and, with
// digest, the header digest.
func AppendHeader(dst []byte, b *BHS, ahs []byte, dataLen int, digest bool) []byte {
	b.SetLengths(len(ahs), dataLen)
	start := len(dst)
	dst = append(dst, b[:]...)
	dst = append(dst, ahs...)
	dst = append(dst, zeroPad[:PadLen(len(ahs))]...)
	if digest {
		dst = AppendDigest(dst, CRC32C(dst[start:]))
	}
	return dst
}

// AppendDataTrailer appends what follows a data segment on the wire: its
// padding and, with digest, the data digest over data and padding. With
// AppendHeader it lets a writer send data from its own buffer (writev)
// without copying it.
func AppendDataTrailer(dst []byte, data []byte, digest bool) []byte {
	pad := zeroPad[:PadLen(len(data))]
	dst = append(dst, pad...)
	if digest && len(data) > 0 {
		dst = AppendDigest(dst, updateCRC(CRC32C(data), pad))
	}
	return dst
}

// AppendPDU appends a whole PDU: header, AHS, header digest, data, padding
// and data digest. It sets b's length fields.
func AppendPDU(dst []byte, b *BHS, ahs, data []byte, headerDigest, dataDigest bool) []byte {
	dst = AppendHeader(dst, b, ahs, len(data), headerDigest)
	dst = append(dst, data...)
	return AppendDataTrailer(dst, data, dataDigest)
}

// AHS types (11.2.1.2).
const (
	AHSExtendedCDB    = 1
	AHSBidiReadLength = 2
)

// AHS is the decoded content of a PDU's additional header segments.
type AHS struct {
	// ExtendedCDB holds the CDB bytes beyond the first 16 (a copy).
	ExtendedCDB []byte
	// BidiReadLength is the expected bidirectional read data length; valid
	// when HasBidiReadLength.
	BidiReadLength    uint32
	HasBidiReadLength bool
}

// MaxCDBLength is the longest CDB an extended-CDB AHS can carry here.
const MaxCDBLength = 260

// ParseAHS decodes the AHS area of a PDU (TotalAHSLength bytes). Each AHS
// is:
//
//	+---------------+---------------+---------------+-------------+
//	| AHSLength (2)                 | AHSType       | specific... |
//	+---------------+---------------+---------------+-------------+
//
// where AHSLength counts the bytes after AHSType, excluding padding to a
// word. Unknown types are ErrInvalidField; so are repeated types.
func ParseAHS(p []byte) (AHS, error) {
	var a AHS
	if len(p) > MaxAHSLength {
		return a, fmt.Errorf("%w: AHS %d bytes", ErrTooLarge, len(p))
	}
	seenCDB := false
	for len(p) > 0 {
		if len(p) < 4 {
			return AHS{}, fmt.Errorf("%w: AHS header", ErrTruncated)
		}
		n := int(binary.BigEndian.Uint16(p))
		typ := p[2]
		total := 3 + n
		total += PadLen(total)
		if n == 0 || total > len(p) {
			return AHS{}, fmt.Errorf("%w: AHS length %d", ErrTruncated, n)
		}
		body := p[3 : 3+n]
		switch typ {
		case AHSExtendedCDB:
			// body: 1 reserved byte, then the CDB bytes beyond 16.
			if seenCDB || n < 2 || 16+n-1 > MaxCDBLength {
				return AHS{}, fmt.Errorf("%w: extended CDB AHS length %d", ErrInvalidField, n)
			}
			seenCDB = true
			a.ExtendedCDB = append([]byte(nil), body[1:]...)
		case AHSBidiReadLength:
			if a.HasBidiReadLength || n != 5 {
				return AHS{}, fmt.Errorf("%w: bidi read length AHS length %d", ErrInvalidField, n)
			}
			a.HasBidiReadLength = true
			a.BidiReadLength = binary.BigEndian.Uint32(body[1:])
		default:
			return AHS{}, fmt.Errorf("%w: AHS type %d", ErrInvalidField, typ)
		}
		p = p[total:]
	}
	return a, nil
}

// AppendExtendedCDB appends an extended-CDB AHS for the CDB bytes beyond
// the first 16 (rest must be 1..MaxCDBLength-16 bytes), padded to a word.
func AppendExtendedCDB(dst, rest []byte) []byte {
	n := 1 + len(rest)
	dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	dst = append(dst, AHSExtendedCDB, 0)
	dst = append(dst, rest...)
	return append(dst, zeroPad[:PadLen(3+n)]...)
}

// AppendBidiReadLength appends an expected bidirectional read data length AHS.
func AppendBidiReadLength(dst []byte, n uint32) []byte {
	dst = append(dst, 0, 5, AHSBidiReadLength, 0)
	return binary.BigEndian.AppendUint32(dst, n)
}

// Limits bound what a Reader accepts and say which digests are in use.
type Limits struct {
	// MaxDataSegmentLength caps DataSegmentLength (the receiver's declared
	// MaxRecvDataSegmentLength, or the login limit). 0 means the format's
	// maximum.
	MaxDataSegmentLength int
	// MaxAHSLength caps TotalAHSLength in bytes. 0 means MaxAHSLength.
	MaxAHSLength int
	// HeaderDigest and DataDigest turn CRC32C digests on.
	HeaderDigest, DataDigest bool
}

// Reader reads PDUs from a byte stream in two steps, so that the caller
// can pick the destination of the data segment after seeing the header:
// ReadHeader, then exactly one of ReadData or Discard when the header
// announced data. A Reader is not safe for concurrent use.
type Reader struct {
	r      io.Reader
	Limits Limits

	buf     [BHSLen + MaxAHSLength + DigestLen]byte
	tbuf    [8]byte // padding and data digest
	pending int     // data segment bytes announced by the last header, not yet read
	hasData bool
}

// NewReader returns a Reader over r (usually a *bufio.Reader).
func NewReader(r io.Reader, lim Limits) *Reader {
	return &Reader{r: r, Limits: lim}
}

func readFull(r io.Reader, p []byte) error {
	if _, err := io.ReadFull(r, p); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: %w", ErrTruncated, err)
		}
		return err
	}
	return nil
}

// ReadHeader reads the next PDU's BHS into b and returns its AHS bytes
// (valid until the next ReadHeader). Errors:
//   - io.EOF at a clean PDU boundary, ErrTruncated (wrapping
//     io.ErrUnexpectedEOF) inside one, or the stream's error;
//   - ErrHeaderDigest: framing is lost, drop the connection;
//   - ErrTooLarge for the AHS: framing is lost too (the AHS is not read);
//   - ErrTooLarge for the data segment: b is valid and framing intact; call
//     Discard to skip the data and go on.
//
// A previous PDU's unread data is discarded first.
func (r *Reader) ReadHeader(b *BHS) (ahs []byte, err error) {
	if r.hasData {
		if err := r.Discard(); err != nil && !errors.Is(err, ErrDataDigest) {
			return nil, err
		}
	}
	if err := readFull(r.r, r.buf[:BHSLen]); err != nil {
		return nil, err
	}
	copy(b[:], r.buf[:BHSLen])
	ahsLen := b.TotalAHSLength()
	maxAHS := r.Limits.MaxAHSLength
	if maxAHS <= 0 || maxAHS > MaxAHSLength {
		maxAHS = MaxAHSLength
	}
	if ahsLen > maxAHS {
		return nil, fmt.Errorf("%w: TotalAHSLength %d > %d", ErrTooLarge, ahsLen, maxAHS)
	}
	n := BHSLen + ahsLen
	if r.Limits.HeaderDigest {
		n += DigestLen
	}
	if err := readFull(r.r, r.buf[BHSLen:n]); err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: %w", ErrTruncated, io.ErrUnexpectedEOF)
		}
		return nil, err
	}
	if r.Limits.HeaderDigest {
		want := binary.LittleEndian.Uint32(r.buf[BHSLen+ahsLen:])
		if got := CRC32C(r.buf[:BHSLen+ahsLen]); got != want {
			return nil, fmt.Errorf("%w: got %08x want %08x", ErrHeaderDigest, got, want)
		}
	}
	r.pending = b.DataSegmentLength()
	r.hasData = r.pending > 0
	maxData := r.Limits.MaxDataSegmentLength
	if maxData <= 0 {
		maxData = MaxDataSegmentLength
	}
	if r.pending > maxData {
		return r.buf[BHSLen : BHSLen+ahsLen], fmt.Errorf("%w: DataSegmentLength %d > %d",
			ErrTooLarge, r.pending, maxData)
	}
	return r.buf[BHSLen : BHSLen+ahsLen], nil
}

// Pending returns the data segment length the last header announced, or
// 0 once it was read or discarded.
func (r *Reader) Pending() int {
	if !r.hasData {
		return 0
	}
	return r.pending
}

// ReadData reads the data segment announced by the last header into dst,
// whose length must equal it, with its padding and digest. ErrDataDigest
// leaves the stream at the next PDU.
func (r *Reader) ReadData(dst []byte) error {
	if !r.hasData || len(dst) != r.pending {
		return fmt.Errorf("%w: ReadData of %d bytes, %d pending", ErrInvalidField, len(dst), r.Pending())
	}
	r.hasData = false
	if err := readFull(r.r, dst); err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: %w", ErrTruncated, io.ErrUnexpectedEOF)
		}
		return err
	}
	var crc uint32
	if r.Limits.DataDigest {
		crc = CRC32C(dst)
	}
	return r.trailer(crc, len(dst))
}

func (r *Reader) trailer(crc uint32, n int) error {
	pad := PadLen(n)
	tl := pad
	if r.Limits.DataDigest {
		tl += DigestLen
	}
	t := r.tbuf[:]
	if err := readFull(r.r, t[:tl]); err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: %w", ErrTruncated, io.ErrUnexpectedEOF)
		}
		return err
	}
	if r.Limits.DataDigest {
		crc = updateCRC(crc, t[:pad])
		if want := binary.LittleEndian.Uint32(t[pad:]); crc != want {
			return fmt.Errorf("%w: got %08x want %08x", ErrDataDigest, crc, want)
		}
	}
	return nil
}

// Discard skips the data segment announced by the last header, checking
// its digest. It does nothing when there is none.
func (r *Reader) Discard() error {
	if !r.hasData {
		return nil
	}
	r.hasData = false
	n := r.pending
	var chunk [4096]byte
	crc := uint32(0)
	for left := n; left > 0; {
		k := min(left, len(chunk))
		if err := readFull(r.r, chunk[:k]); err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: %w", ErrTruncated, io.ErrUnexpectedEOF)
			}
			return err
		}
		if r.Limits.DataDigest {
			crc = updateCRC(crc, chunk[:k])
		}
		left -= k
	}
	return r.trailer(crc, n)
}

// PDU is a whole PDU as ReadPDU returns it.
type PDU struct {
	BHS  BHS
	AHS  []byte
	Data []byte
}

// ReadPDU reads a whole PDU, allocating its AHS and data (for login, text
// and tests; the I/O path uses ReadHeader/ReadData with pooled buffers).
func (r *Reader) ReadPDU() (*PDU, error) {
	p := &PDU{}
	ahs, err := r.ReadHeader(&p.BHS)
	if err != nil {
		return nil, err
	}
	if len(ahs) > 0 {
		p.AHS = append([]byte(nil), ahs...)
	}
	if n := r.Pending(); n > 0 {
		p.Data = make([]byte, n)
		if err := r.ReadData(p.Data); err != nil {
			return p, err
		}
	}
	return p, nil
}
