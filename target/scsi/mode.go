package scsi

import (
	"encoding/binary"
)

// Mode pages (SPC-4 7.5, SBC-3 6.4). The LU has four pages; the
// changeable bits are the ones the device server honours:
//
//	01h read-write error recovery  nothing changeable
//	08h caching                    WCE (0: every write is forced to FUA,
//	                               i.e. write-through; the Device's cache
//	                               is volatile so the default is 1)
//	0Ah control                    D_SENSE, SWP, TAS
//	1Ch informational exceptions   nothing changeable
//
// Saved values are not supported (page control 11b → 39/00).

type modePage struct {
	code byte
	len  int // page length including the 2-byte header
}

var modePages = [...]modePage{{0x01, 12}, {0x08, 20}, {0x0a, 12}, {0x1c, 12}}

// Page control values.
const (
	pcCurrent    = 0
	pcChangeable = 1
	pcDefault    = 2
	pcSaved      = 3
)

// renderPage appends page code in the form pc asks for.
func (lu *LU) renderPage(b []byte, code byte, pc byte) []byte {
	m := &lu.mode
	switch code {
	case 0x01:
		p := []byte{0x01, 0x0a, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0} // AWRE, ARRE
		if pc == pcChangeable {
			clear(p[2:])
		}
		return append(b, p...)
	case 0x08:
		p := make([]byte, 20)
		p[0], p[1] = 0x08, 0x12
		switch pc {
		case pcChangeable:
			p[2] = 0x04
		case pcDefault:
			p[2] = 0x04
		default:
			if m.wce.Load() {
				p[2] = 0x04
			}
		}
		return append(b, p...)
	case 0x0a:
		p := make([]byte, 12)
		p[0], p[1] = 0x0a, 0x0a
		switch pc {
		case pcChangeable:
			p[2] = 0x04 // D_SENSE
			p[4] = 0x08 // SWP
			p[5] = 0x40 // TAS
		default:
			p[3] = 0x10 // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering
			if pc == pcCurrent {
				if m.dsense.Load() {
					p[2] |= 0x04
				}
				if m.swp.Load() {
					p[4] |= 0x08
				}
				if m.tas.Load() {
					p[5] |= 0x40
				}
			}
			binary.BigEndian.PutUint16(p[8:], 0xffff) // BUSY TIMEOUT PERIOD: unlimited
		}
		return append(b, p...)
	case 0x1c:
		p := make([]byte, 12)
		p[0], p[1] = 0x1c, 0x0a
		if pc != pcChangeable {
			p[2] = 0x08 // DEXCPT: no informational exception reporting
		}
		return append(b, p...)
	}
	return b
}

// MODE SENSE (6) and (10) (SPC-4 6.11, 6.12).
func (r *request) modeSense() Result {
	cdb := r.cdb
	ten := cdb[0] == 0x5a
	dbd := cdb[1]&0x08 != 0
	llbaa := ten && cdb[1]&0x10 != 0
	pc := cdb[2] >> 6
	page := cdb[2] & 0x3f
	sub := cdb[3]
	var alloc uint32
	if ten {
		alloc = uint32(be16(cdb[7:9]))
	} else {
		alloc = uint32(cdb[4])
	}
	if pc == pcSaved {
		return r.fail(illegal(ascSavingParamsNotSupported))
	}
	var pages []byte
	switch {
	case page == 0x3f && (sub == 0x00 || sub == 0xff):
		for _, p := range modePages {
			pages = r.lu.renderPage(pages, p.code, pc)
		}
	case sub == 0x00 || sub == 0xff:
		known := false
		for _, p := range modePages {
			known = known || p.code == page
		}
		if !known {
			return r.fail(invalidCDB(2, 5))
		}
		pages = r.lu.renderPage(pages, page, pc)
	default:
		return r.fail(invalidCDB(3, 7))
	}

	// Device-specific parameter (SBC-3 6.4.1): WP (7), DPOFUA (4).
	dsp := byte(0x10)
	if r.info.ReadOnly || r.lu.mode.swp.Load() {
		dsp |= 0x80
	}
	var bd []byte
	if !dbd {
		blocks := uint64(r.info.Blocks())
		if pc == pcChangeable {
			blocks = 0
		}
		bs := uint32(r.info.LogicalBlockSize)
		if pc == pcChangeable {
			bs = 0
		}
		if llbaa {
			bd = make([]byte, 16)
			binary.BigEndian.PutUint64(bd, blocks)
			binary.BigEndian.PutUint32(bd[12:], bs)
		} else {
			bd = make([]byte, 8)
			binary.BigEndian.PutUint32(bd, uint32(min(blocks, 0xffffffff)))
			bd[5], bd[6], bd[7] = byte(bs>>16), byte(bs>>8), byte(bs)
		}
	}
	var d []byte
	if ten {
		d = make([]byte, 8, 8+len(bd)+len(pages))
		d[3] = dsp
		if llbaa && len(bd) == 16 {
			d[4] = 0x01 // LONGLBA
		}
		binary.BigEndian.PutUint16(d[6:], uint16(len(bd)))
		d = append(append(d, bd...), pages...)
		binary.BigEndian.PutUint16(d, uint16(len(d)-2))
	} else {
		d = make([]byte, 4, 4+len(bd)+len(pages))
		d[2] = dsp
		d[3] = byte(len(bd))
		d = append(append(d, bd...), pages...)
		d[0] = byte(len(d) - 1)
	}
	return dataIn(d, alloc)
}

// MODE SELECT (6) and (10) (SPC-4 6.9, 6.10). The whole parameter list is
// validated before anything changes; a bit that is not changeable must
// carry its current value. Changes raise MODE PARAMETERS CHANGED for the
// other nexuses (SPC-4 5.13).
func (r *request) modeSelect() Result {
	cdb := r.cdb
	ten := cdb[0] == 0x55
	var plen int
	if ten {
		plen = int(be16(cdb[7:9]))
	} else {
		plen = int(cdb[4])
	}
	r.xfer = uint32(plen)
	if cdb[1]&0x01 != 0 { // SP: saving pages is not supported
		return r.fail(invalidCDB(1, 0))
	}
	if plen == 0 {
		return Result{}
	}
	p := r.cmd.DataOut
	if len(p) < plen {
		return r.fail(illegal(ascParamListLength))
	}
	p = p[:plen]
	hdr := 4
	if ten {
		hdr = 8
	}
	if len(p) < hdr {
		return r.fail(illegal(ascParamListLength))
	}
	var bdl int
	longLBA := false
	if ten {
		bdl = int(be16(p[6:8]))
		longLBA = p[4]&0x01 != 0
	} else {
		bdl = int(p[3])
	}
	if p[1] != 0 { // MEDIUM TYPE
		return r.fail(invalidParam(1, -1))
	}
	if len(p) < hdr+bdl {
		return r.fail(illegal(ascParamListLength))
	}
	switch {
	case bdl == 0:
	case !longLBA && bdl == 8:
		bd := p[hdr : hdr+8]
		if n := be32(bd[0:4]); n != 0 && uint64(n) != uint64(min(r.info.Blocks(), 0xffffffff)) {
			return r.fail(invalidParam(hdr, -1))
		}
		if bs := be24(bd[5:8]); bs != uint32(r.info.LogicalBlockSize) {
			return r.fail(invalidParam(hdr+5, -1))
		}
	case longLBA && bdl == 16:
		bd := p[hdr : hdr+16]
		if n := be64(bd[0:8]); n != 0 && n != uint64(r.info.Blocks()) {
			return r.fail(invalidParam(hdr, -1))
		}
		if bs := be32(bd[12:16]); bs != uint32(r.info.LogicalBlockSize) {
			return r.fail(invalidParam(hdr+12, -1))
		}
	default:
		return r.fail(invalidParam(hdr-2, -1))
	}
	pages := p[hdr+bdl:]
	if len(pages) > 0 && cdb[1]&0x10 == 0 {
		// PF=0: vendor-specific page format, which Lunway has none of.
		return r.fail(invalidCDB(1, 4))
	}

	m := &r.lu.mode
	m.mu.Lock()
	defer m.mu.Unlock()
	type change struct {
		code byte
		page []byte
	}
	var changes []change
	for off := hdr + bdl; off < len(p); {
		if len(p)-off < 2 {
			return r.fail(illegal(ascParamListLength))
		}
		code := p[off] & 0x3f
		if p[off]&0x40 != 0 { // SPF: no subpages are supported
			return r.fail(invalidParam(off, 6))
		}
		var want int
		for _, mp := range modePages {
			if mp.code == code {
				want = mp.len
			}
		}
		if want == 0 {
			return r.fail(invalidParam(off, 5))
		}
		if int(p[off+1])+2 != want {
			return r.fail(invalidParam(off+1, -1))
		}
		if len(p)-off < want {
			return r.fail(illegal(ascParamListLength))
		}
		got := p[off : off+want]
		cur := r.lu.renderPage(nil, code, pcCurrent)
		chg := r.lu.renderPage(nil, code, pcChangeable)
		for i := 2; i < want; i++ {
			if bad := (got[i] ^ cur[i]) &^ chg[i]; bad != 0 {
				return r.fail(invalidParam(off+i, topBit(bad)))
			}
		}
		changes = append(changes, change{code, got})
		off += want
	}
	changed := false
	set := func(b interface {
		Load() bool
		Store(bool)
	}, v bool) {
		if b.Load() != v {
			b.Store(v)
			changed = true
		}
	}
	for _, c := range changes {
		switch c.code {
		case 0x08:
			set(&m.wce, c.page[2]&0x04 != 0)
		case 0x0a:
			set(&m.dsense, c.page[2]&0x04 != 0)
			set(&m.swp, c.page[4]&0x08 != 0)
			set(&m.tas, c.page[5]&0x40 != 0)
		}
	}
	if changed {
		r.lu.broadcastUA(r.ns, ascModeParamsChanged)
	}
	return Result{TransferLen: r.xfer}
}
