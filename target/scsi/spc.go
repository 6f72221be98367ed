package scsi

import (
	"encoding/binary"
)

// Primary commands (SPC-4) other than mode pages, reservations and ALUA.

func (r *request) testUnitReady() Result { return Result{} }

// Standard INQUIRY data (SPC-4 6.6.2), 96 bytes:
//
//	0      peripheral qualifier (7:5) | device type (4:0) = 00h (direct access)
//	2      VERSION 06h (SPC-4)
//	3      NORMACA 0 | HISUP 1 | RESPONSE DATA FORMAT 2
//	4      ADDITIONAL LENGTH (n-5)
//	5      TPGS (5:4) | 3PC (3)
//	7      CMDQUE (1)
//	8-15   T10 VENDOR IDENTIFICATION
//	16-31  PRODUCT IDENTIFICATION
//	32-35  PRODUCT REVISION LEVEL
//	58-73  VERSION DESCRIPTORS
const stdInquiryLen = 96

func (r *request) inquiry() Result {
	cdb := r.cdb
	alloc := uint32(be16(cdb[3:5]))
	if cdb[1]&0x01 == 0 {
		if cdb[2] != 0 {
			return r.fail(invalidCDB(2, 7))
		}
		return dataIn(r.standardInquiry(), alloc)
	}
	page, ok := r.vpd(cdb[2])
	if !ok {
		return r.fail(invalidCDB(2, 7))
	}
	return dataIn(page, alloc)
}

func (r *request) standardInquiry() []byte {
	d := make([]byte, stdInquiryLen)
	d[2] = 0x06
	d[3] = 0x12
	d[4] = stdInquiryLen - 5
	d[5] = 0x08 // 3PC: EXTENDED COPY
	if r.t.alua != nil {
		d[5] |= r.t.alua.tpgsBits() << 4
		if r.t.alua.portCount() > 1 {
			d[6] |= 0x10 // MULTIP: more than one target port
		}
	}
	d[7] = 0x02
	copy(d[8:16], padASCII(r.lu.opts.VendorID, 8))
	copy(d[16:32], padASCII(r.lu.opts.ProductID, 16))
	copy(d[32:36], padASCII(r.lu.opts.Revision, 4))
	for i, v := range []uint16{
		0x00c0, // SAM-5
		0x0960, // iSCSI
		0x0460, // SPC-4
		0x04c0, // SBC-3
	} {
		binary.BigEndian.PutUint16(d[58+2*i:], v)
	}
	return d
}

// supportedVPD lists the VPD pages in ascending order.
func (r *request) supportedVPD() []byte {
	pages := []byte{0x00, 0x80, 0x83, 0xb0, 0xb1}
	if r.thin() {
		pages = append(pages, 0xb2)
	}
	return pages
}

// thin reports whether logical block provisioning management is enabled
// (LBPME): the Device is thin and can unmap.
func (r *request) thin() bool { return r.info.Thin && r.lu.unmapper != nil }

func vpdPage(code byte, body []byte) []byte {
	d := make([]byte, 4, 4+len(body))
	d[1] = code
	binary.BigEndian.PutUint16(d[2:], uint16(len(body)))
	return append(d, body...)
}

func (r *request) vpd(code byte) ([]byte, bool) {
	switch code {
	case 0x00:
		return vpdPage(0x00, r.supportedVPD()), true
	case 0x80:
		return vpdPage(0x80, []byte(r.lu.serial())), true
	case 0x83:
		return vpdPage(0x83, r.deviceIdentification()), true
	case 0xb0:
		return vpdPage(0xb0, r.blockLimits()), true
	case 0xb1:
		b := make([]byte, 0x3c)
		b[1] = 0x01 // MEDIUM ROTATION RATE 1: non-rotating medium
		return vpdPage(0xb1, b), true
	case 0xb2:
		if !r.thin() {
			return nil, false
		}
		return vpdPage(0xb2, r.provisioning()), true
	}
	return nil, false
}

// designator appends one identification descriptor (SPC-4 7.8.6.1):
//
//	0  PROTOCOL IDENTIFIER (7:4) | CODE SET (3:0)
//	1  PIV (7) | ASSOCIATION (5:4) | DESIGNATOR TYPE (3:0)
//	3  DESIGNATOR LENGTH
func designator(b []byte, proto, codeSet, piv, assoc, typ byte, v []byte) []byte {
	b = append(b, proto<<4|codeSet, piv<<7|assoc<<4|typ, 0, byte(len(v)))
	return append(b, v...)
}

const protoISCSI = 5

// scsiName pads a SCSI name string with NULs to a multiple of 4 (at least
// one NUL), as the SCSI name string designator requires.
func scsiName(s string) []byte {
	if len(s) > 251 {
		s = s[:251]
	}
	n := (len(s) + 4) &^ 3
	b := make([]byte, n)
	copy(b, s)
	return b
}

func (r *request) deviceIdentification() []byte {
	var b []byte
	naa := r.lu.NAA()
	b = designator(b, 0, 1, 0, 0, 3, naa[:])
	t10 := append(padASCII(r.lu.opts.VendorID, 8), []byte(r.lu.serial())...)
	b = designator(b, 0, 2, 0, 0, 1, t10)
	if n := r.cmd.Nexus; n != nil {
		var rel [4]byte
		binary.BigEndian.PutUint16(rel[2:], n.Port.RelativeID)
		b = designator(b, protoISCSI, 1, 1, 1, 4, rel[:])
		var tpg [4]byte
		binary.BigEndian.PutUint16(tpg[2:], r.t.groupOf(n.Port))
		b = designator(b, protoISCSI, 1, 1, 1, 5, tpg[:])
		if n.Port.Name != "" {
			b = designator(b, protoISCSI, 3, 1, 1, 8, scsiName(n.Port.Name))
		}
	}
	if r.t.name != "" {
		b = designator(b, protoISCSI, 3, 1, 2, 8, scsiName(r.t.name))
	}
	return b
}

// Block limits VPD page (SBC-3 6.5.3). Every value is what the command
// handlers enforce.
func (r *request) blockLimits() []byte {
	lim := &r.lu.lim
	b := make([]byte, 0x3c)
	b[0] = 0x01 // WSNZ: WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 is refused
	b[1] = byte(lim.maxCAW)
	binary.BigEndian.PutUint16(b[2:], uint16(lim.unmapGranRatio))
	binary.BigEndian.PutUint32(b[4:], lim.maxTransfer)
	binary.BigEndian.PutUint32(b[8:], lim.optimalTransfer)
	binary.BigEndian.PutUint32(b[12:], lim.maxTransfer) // MAXIMUM PREFETCH LENGTH
	if r.thin() {
		binary.BigEndian.PutUint32(b[16:], uint32(min(lim.maxWriteSame, 0xffffffff)))
		binary.BigEndian.PutUint32(b[20:], lim.maxUnmapDesc)
		binary.BigEndian.PutUint32(b[24:], lim.unmapGranRatio)
		binary.BigEndian.PutUint32(b[28:], 0x80000000) // UGAVALID, alignment 0
	}
	binary.BigEndian.PutUint64(b[32:], lim.maxWriteSame)
	return b
}

// Logical block provisioning VPD page (SBC-3 6.5.4).
func (r *request) provisioning() []byte {
	b := make([]byte, 4)
	b[1] = 0x80 | 0x40 | 0x20 | 0x04 // LBPU, LBPWS, LBPWS10, LBPRZ
	b[2] = 0x02                      // thin provisioned
	return b
}

// REPORT LUNS (SPC-4 6.33).
func (r *request) reportLUNs() Result {
	cdb := r.cdb
	alloc := be32(cdb[6:10])
	switch cdb[2] {
	case 0x00, 0x02: // all logical units (no well-known LUs exist)
	case 0x01: // well-known logical units only: none
	default:
		return r.fail(invalidCDB(2, 7))
	}
	if alloc < 16 {
		return r.fail(invalidCDB(6, -1))
	}
	var luns []uint64
	if cdb[2] != 0x01 {
		luns = r.t.LUNs()
	}
	data := make([]byte, 8+8*len(luns))
	binary.BigEndian.PutUint32(data, uint32(8*len(luns)))
	for i, lun := range luns {
		b := EncodeLUN(lun)
		copy(data[8+8*i:], b[:])
	}
	if r.ns != nil {
		r.ns.clearUA(ascReportedLUNsChanged)
	}
	return dataIn(data, alloc)
}

// REQUEST SENSE (SPC-4 6.39): reports and clears the oldest pending unit
// attention as parameter data, else NO SENSE.
func (r *request) requestSense() Result {
	alloc := uint32(r.cdb[4])
	s := senseData{key: senseNoSense, asc: ascNoAdditionalSense}
	if code, ok := r.ns.takeUA(); ok {
		s = senseData{key: senseUnitAttention, asc: code}
	}
	var b []byte
	if r.cdb[1]&0x01 != 0 {
		b = s.appendDescriptor(nil)
	} else {
		b = s.appendFixed(nil)
	}
	return dataIn(b, alloc)
}

// START STOP UNIT (SBC-3 5.25). The LU is a disk that is always ready and
// whose medium cannot be removed: START and power condition changes are
// accepted and have no effect; an eject (LOEJ=1, START=0) is refused with
// MEDIUM REMOVAL PREVENTED while a nexus prevents removal, and otherwise
// accepted without effect (there is nothing to eject).
func (r *request) startStopUnit() Result {
	b4 := r.cdb[4]
	pc := b4 >> 4
	switch pc {
	case 0x0, 0x1, 0x2, 0x3, 0x7, 0xa, 0xb:
	default:
		return r.fail(invalidCDB(4, 7))
	}
	if pc == 0 && b4&0x02 != 0 && b4&0x01 == 0 && r.lu.prevented() {
		return r.fail(illegal(ascMediumRemovalPrevented))
	}
	return Result{}
}

// PREVENT ALLOW MEDIUM REMOVAL (SPC-4 6.13) records the nexus' choice;
// START STOP UNIT honours it, and resets and nexus loss clear it.
func (r *request) preventAllow() Result {
	p := r.cdb[4] & 0x03
	if p > 1 {
		// 10b/11b are for medium changers.
		return r.fail(invalidCDB(4, 1))
	}
	r.ns.mu.Lock()
	r.ns.mu.prevent = p == 1
	r.ns.mu.Unlock()
	return Result{}
}

// SEND DIAGNOSTIC (SPC-4 6.42): the default self-test (SELFTEST=1) passes
// at once; other self-tests and diagnostic pages are not supported.
func (r *request) sendDiagnostic() Result {
	b1 := r.cdb[1]
	if b1&0x04 == 0 {
		return r.fail(invalidCDB(1, 2))
	}
	if b1>>5 != 0 {
		return r.fail(invalidCDB(1, 7))
	}
	if be16(r.cdb[3:5]) != 0 {
		return r.fail(invalidCDB(3, -1))
	}
	return Result{}
}

// REPORT SUPPORTED OPERATION CODES (SPC-4 6.35).
func (r *request) reportSupportedOpcodes() Result {
	cdb := r.cdb
	rctd := cdb[2]&0x80 != 0
	opts := cdb[2] & 0x07
	reqOp, reqSA := cdb[3], be16(cdb[4:6])
	alloc := be32(cdb[6:10])
	supported := func(o *opInfo) bool { return o.supported == nil || o.supported(r.lu) }

	if opts == 0 {
		var d []byte
		d = append(d, 0, 0, 0, 0)
		for _, o := range r.t.table.all {
			if !supported(o) {
				continue
			}
			var e [8]byte
			e[0] = o.op
			if o.hasSA {
				binary.BigEndian.PutUint16(e[2:], o.sa)
				e[5] |= 0x01 // SERVACTV
			}
			if rctd {
				e[5] |= 0x02 // CTDP
			}
			binary.BigEndian.PutUint16(e[6:], uint16(o.cdbLen()))
			d = append(d, e[:]...)
			if rctd {
				d = appendTimeouts(d, o)
			}
		}
		binary.BigEndian.PutUint32(d, uint32(len(d)-4))
		return dataIn(d, alloc)
	}

	var found *opInfo
	switch opts {
	case 1: // opcode without service action
		if r.t.table.sa[reqOp] != nil {
			return r.fail(invalidCDB(2, 2))
		}
		found = r.t.table.byOp[reqOp]
	case 2: // opcode and service action
		if r.t.table.sa[reqOp] == nil {
			return r.fail(invalidCDB(2, 2))
		}
		for _, o := range r.t.table.sa[reqOp] {
			if o.sa == reqSA {
				found = o
			}
		}
	case 3: // opcode, with the service action when it has them
		if r.t.table.sa[reqOp] == nil {
			found = r.t.table.byOp[reqOp]
		} else {
			for _, o := range r.t.table.sa[reqOp] {
				if o.sa == reqSA {
					found = o
				}
			}
		}
	default:
		return r.fail(invalidCDB(2, 2))
	}
	d := make([]byte, 4)
	if found == nil || !supported(found) {
		d[1] = 0x01 // not supported
		return dataIn(d, alloc)
	}
	d[1] = 0x03 // supported, in conformance with a standard
	if rctd {
		d[1] |= 0x80 // CTDP
	}
	binary.BigEndian.PutUint16(d[2:], uint16(found.cdbLen()))
	usage := append([]byte(nil), found.usage...)
	usage[0] = found.op
	if found.hasSA {
		usage[1] = usage[1]&^0x1f | byte(found.sa)&0x1f
	}
	d = append(d, usage...)
	if rctd {
		d = appendTimeouts(d, found)
	}
	return dataIn(d, alloc)
}

// appendTimeouts appends a command timeouts descriptor (SPC-4 6.35.4).
func appendTimeouts(d []byte, o *opInfo) []byte {
	var t [12]byte
	binary.BigEndian.PutUint16(t[0:], 0x0a)
	binary.BigEndian.PutUint32(t[4:], o.timeout)
	binary.BigEndian.PutUint32(t[8:], o.timeout*2)
	return append(d, t[:]...)
}

// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS (SPC-4 6.37).
func (r *request) reportSupportedTMFs() Result {
	alloc := be32(r.cdb[6:10])
	if alloc < 4 {
		return r.fail(invalidCDB(6, -1))
	}
	d := make([]byte, 4, 16)
	// ATS, ATSS, CTSS, LURS, QTS, TRS (no CLEAR ACA, no WAKEUP).
	d[0] = 0x80 | 0x40 | 0x10 | 0x08 | 0x04 | 0x02
	d[1] = 0x04 | 0x02 | 0x01 // QAES, QTSS, ITNRS
	if r.cdb[2]&0x80 != 0 {   // REPCD: extended format
		d[3] = 0x0c
		d = append(d, make([]byte, 12)...)
	}
	return dataIn(d, alloc)
}
