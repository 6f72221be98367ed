package iscsi

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Pure decoders of the SCSI data the Device reads at open and on the I/O
// path. Each takes the bytes a target returned and never panics: short or
// inconsistent data is an error wrapping ErrTarget, or a conservative
// default where the standard allows the field to be absent.

// capacity is READ CAPACITY (16) parameter data (SBC-3 5.16.2):
//
//	byte  0..7   RETURNED LOGICAL BLOCK ADDRESS (the last LBA)
//	      8..11  LOGICAL BLOCK LENGTH IN BYTES
//	     12      P_TYPE, PROT_EN
//	     13      P_I_EXPONENT (7..4) | LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (3..0)
//	     14      LBPME (7) | LBPRZ (6) | LOWEST ALIGNED LBA (5..0, high bits)
//	     15      LOWEST ALIGNED LBA (low bits)
type capacity struct {
	blocks    uint64
	blockSize int
	physExp   uint8 // log2(physical / logical)
	lbpme     bool  // logical block provisioning management enabled
	lbprz     bool  // deallocated blocks read as zeros
}

// maxPhysExp caps the physical block exponent: 256 logical blocks (1 MiB
// at 4 KiB) is far beyond any real device.
const maxPhysExp = 8

func parseCapacity16(b []byte) (capacity, error) {
	if len(b) < 15 {
		return capacity{}, fmt.Errorf("%w: READ CAPACITY (16) data of %d bytes", ErrTarget, len(b))
	}
	last := binary.BigEndian.Uint64(b)
	bs := binary.BigEndian.Uint32(b[8:])
	if bs != 512 && bs != 4096 {
		return capacity{}, fmt.Errorf("%w: logical block size %d (Lunway works with 512 and 4096)", ErrUnsupported, bs)
	}
	if last == math.MaxUint64 || (last+1) > math.MaxInt64/uint64(bs) {
		return capacity{}, fmt.Errorf("%w: capacity of %d blocks of %d bytes overflows", ErrTarget, last, bs)
	}
	c := capacity{blocks: last + 1, blockSize: int(bs), physExp: b[13] & 0x0f, lbpme: b[14]&0x80 != 0, lbprz: b[14]&0x40 != 0}
	if c.physExp > maxPhysExp {
		c.physExp = 0
	}
	return c, nil
}

// parseCapacity10 decodes READ CAPACITY (10) data: the last LBA (32 bits;
// 0xffffffff means "use READ CAPACITY (16)") and the block length.
func parseCapacity10(b []byte) (capacity, error) {
	if len(b) < 8 {
		return capacity{}, fmt.Errorf("%w: READ CAPACITY (10) data of %d bytes", ErrTarget, len(b))
	}
	last := binary.BigEndian.Uint32(b)
	bs := binary.BigEndian.Uint32(b[4:])
	if last == math.MaxUint32 {
		return capacity{}, fmt.Errorf("%w: READ CAPACITY (10) needs (16), which the target refused", ErrTarget)
	}
	if bs != 512 && bs != 4096 {
		return capacity{}, fmt.Errorf("%w: logical block size %d (Lunway works with 512 and 4096)", ErrUnsupported, bs)
	}
	return capacity{blocks: uint64(last) + 1, blockSize: int(bs)}, nil
}

// vpdPayload checks a VPD page header and returns the page's payload
// (bytes 4 up to the page length, clipped at what was received):
//
//	byte 0  PERIPHERAL QUALIFIER | DEVICE TYPE
//	     1  PAGE CODE
//	     2  PAGE LENGTH (n-3), big endian, 2 bytes
//	     4  payload
func vpdPayload(b []byte, page uint8) ([]byte, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("%w: VPD page 0x%02x of %d bytes", ErrTarget, page, len(b))
	}
	if b[1] != page {
		return nil, fmt.Errorf("%w: asked for VPD page 0x%02x, got 0x%02x", ErrTarget, page, b[1])
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	return b[4:min(len(b), 4+n)], nil
}

// parseSupportedVPD decodes VPD page 0x00, the list of supported pages.
func parseSupportedVPD(b []byte) (map[uint8]bool, error) {
	p, err := vpdPayload(b, 0x00)
	if err != nil {
		return nil, err
	}
	pages := make(map[uint8]bool, len(p))
	for _, c := range p {
		pages[c] = true
	}
	return pages, nil
}

// limits are the BLOCK LIMITS VPD page (0xB0, SBC-3 6.5.3), in blocks.
// Zero means "no limit reported". Offsets in the page:
//
//	byte  5      MAXIMUM COMPARE AND WRITE LENGTH
//	      6..7   OPTIMAL TRANSFER LENGTH GRANULARITY
//	      8..11  MAXIMUM TRANSFER LENGTH
//	     12..15  OPTIMAL TRANSFER LENGTH
//	     20..23  MAXIMUM UNMAP LBA COUNT
//	     24..27  MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
//	     28..31  OPTIMAL UNMAP GRANULARITY
//	     36..43  MAXIMUM WRITE SAME LENGTH
type limits struct {
	maxTransfer     uint32
	optimalTransfer uint32
	maxUnmapLBAs    uint32
	maxUnmapDescs   uint32
	unmapGranule    uint32
	maxWriteSame    uint64
}

func parseBlockLimits(b []byte) (limits, error) {
	p, err := vpdPayload(b, 0xb0)
	if err != nil {
		return limits{}, err
	}
	// field returns the 4-byte field at page offset off, or 0 when the
	// page is too short to hold it (older targets send 0x10 bytes).
	field := func(off int) uint32 {
		if off-4+4 > len(p) {
			return 0
		}
		return binary.BigEndian.Uint32(p[off-4:])
	}
	l := limits{
		maxTransfer:     field(8),
		optimalTransfer: field(12),
		maxUnmapLBAs:    field(20),
		maxUnmapDescs:   field(24),
		unmapGranule:    field(28),
	}
	if len(p) >= 40 {
		l.maxWriteSame = binary.BigEndian.Uint64(p[32:])
	}
	return l, nil
}

// provisioning is the LOGICAL BLOCK PROVISIONING VPD page (0xB2, SBC-3
// 6.5.4):
//
//	byte 4  THRESHOLD EXPONENT
//	     5  LBPU (7) | LBPWS (6) | LBPWS10 (5) | LBPRZ (4..2) | ANC_SUP (1) | DP (0)
//	     6  PROVISIONING TYPE (2..0): 0 full, 1 resource, 2 thin
type provisioning struct {
	lbpu, lbpws bool // UNMAP, WRITE SAME (16) with UNMAP supported
	lbprz       bool // deallocated blocks read as zeros
	thin        bool // provisioning type thin
}

func parseProvisioning(b []byte) (provisioning, error) {
	p, err := vpdPayload(b, 0xb2)
	if err != nil {
		return provisioning{}, err
	}
	if len(p) < 2 {
		return provisioning{}, fmt.Errorf("%w: provisioning VPD page of %d bytes", ErrTarget, len(p)+4)
	}
	// LBPRZ is one bit in SBC-3 and a 3-bit field in SBC-4, where 001b
	// means zeros; both read 1 when deallocated blocks read as zeros.
	pv := provisioning{lbpu: p[1]&0x80 != 0, lbpws: p[1]&0x40 != 0, lbprz: (p[1]>>2)&0x07 == 1}
	if len(p) >= 3 {
		pv.thin = p[2]&0x07 == 2
	}
	return pv, nil
}

// inquiry is what Open needs from standard INQUIRY data:
//
//	byte 0  PERIPHERAL QUALIFIER (7..5) | PERIPHERAL DEVICE TYPE (4..0)
type inquiry struct {
	qualifier  uint8 // 0: connected; 1: not connected now; 3: no logical unit
	deviceType uint8 // 0: direct access block device
}

func parseInquiry(b []byte) (inquiry, error) {
	if len(b) < 1 {
		return inquiry{}, fmt.Errorf("%w: empty INQUIRY data", ErrTarget)
	}
	return inquiry{qualifier: b[0] >> 5, deviceType: b[0] & 0x1f}, nil
}

// parseModeSense6WP decodes the MODE SENSE (6) header's device-specific
// parameter (SBC-3 6.4.1): WP, bit 7, reports write protection.
//
//	byte 0 MODE DATA LENGTH, 1 MEDIUM TYPE, 2 DEVICE-SPECIFIC PARAMETER, 3 BLOCK DESCRIPTOR LENGTH
func parseModeSense6WP(b []byte) (bool, error) {
	if len(b) < 4 {
		return false, fmt.Errorf("%w: MODE SENSE (6) data of %d bytes", ErrTarget, len(b))
	}
	return b[2]&0x80 != 0, nil
}

// parseOneCommand decodes the answer to REPORT SUPPORTED OPERATION CODES
// with REPORTING OPTIONS 001b (one command, SPC-4 6.35.3):
//
//	byte 1  CTDP (7) | SUPPORT (2..0): 011b supported per standard, 101b vendor specific
//	     2  CDB SIZE, 2 bytes, then the CDB usage data
func parseOneCommand(b []byte) (bool, error) {
	if len(b) < 4 {
		return false, fmt.Errorf("%w: one-command parameter data of %d bytes", ErrTarget, len(b))
	}
	s := b[1] & 0x07
	return s == 0x03 || s == 0x05, nil
}

// lbaStatus is one LBA STATUS descriptor, clipped to the query.
type lbaStatus struct {
	lba, blocks uint64
	state       uint8 // 0 mapped, 1 deallocated, 2 anchored
}

// maxStatusDescriptors bounds the descriptors decoded from one GET LBA
// STATUS answer (and the allocation length the Device asks for).
const maxStatusDescriptors = 512

// parseLBAStatus decodes GET LBA STATUS parameter data (SBC-3 5.7.2) for
// a query of [start, start+count) blocks:
//
//	byte 0..3  PARAMETER DATA LENGTH (n-3)
//	     4..7  reserved
//	     8..   LBA STATUS descriptors of 16 bytes:
//	           0..7 LBA, 8..11 NUMBER OF LOGICAL BLOCKS, 12 PROVISIONING STATUS (3..0)
//
// The result starts exactly at start, is contiguous and ends at or before
// start+count. The first descriptor must contain start; the list ends at
// the first descriptor that does not continue the previous one (a target
// may stop early; the caller asks again from there). A state other than
// deallocated or anchored is reported as mapped, which is always safe.
func parseLBAStatus(b []byte, start, count uint64) ([]lbaStatus, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("%w: GET LBA STATUS data of %d bytes", ErrTarget, len(b))
	}
	avail := uint64(binary.BigEndian.Uint32(b)) + 4
	if avail > uint64(len(b)) {
		avail = uint64(len(b)) // truncated by our allocation length
	}
	end := start + count
	if end < start {
		end = math.MaxUint64
	}
	var out []lbaStatus
	next := start
	for off := uint64(8); off+16 <= avail && len(out) < maxStatusDescriptors && next < end; off += 16 {
		d := b[off : off+16]
		lba := binary.BigEndian.Uint64(d)
		n := uint64(binary.BigEndian.Uint32(d[8:]))
		dEnd := lba + n
		if n == 0 || dEnd < lba || lba > next || dEnd <= next {
			if len(out) == 0 {
				return nil, fmt.Errorf("%w: GET LBA STATUS from LBA %d: first descriptor covers [%d, +%d)", ErrTarget, start, lba, n)
			}
			break
		}
		st := d[12] & 0x0f
		if st > 2 {
			st = 0
		}
		dEnd = min(dEnd, end)
		if k := len(out) - 1; k >= 0 && out[k].state == st {
			out[k].blocks += dEnd - next
		} else {
			out = append(out, lbaStatus{lba: next, blocks: dEnd - next, state: st})
		}
		next = dEnd
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: GET LBA STATUS from LBA %d returned no descriptor", ErrTarget, start)
	}
	return out, nil
}
