package scsi

import (
	"context"
	"encoding/binary"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Persistent reservation types (SPC-4 table 170).
const (
	prTypeWE   = 0x1 // Write Exclusive
	prTypeEA   = 0x3 // Exclusive Access
	prTypeWERO = 0x5 // Write Exclusive - Registrants Only
	prTypeEARO = 0x6 // Exclusive Access - Registrants Only
	prTypeWEAR = 0x7 // Write Exclusive - All Registrants
	prTypeEAAR = 0x8 // Exclusive Access - All Registrants
)

func validPRType(t byte) bool {
	switch t {
	case prTypeWE, prTypeEA, prTypeWERO, prTypeEARO, prTypeWEAR, prTypeEAAR:
		return true
	}
	return false
}

func allRegistrants(t byte) bool { return t == prTypeWEAR || t == prTypeEAAR }

// registration is one registered I_T nexus (or set of them).
type registration struct {
	key uint64
	// initiator is the iSCSI initiator name, compared case-insensitively.
	initiator string
	// isid names the initiator port; anyISID (TransportID format 00b)
	// matches every port of the initiator.
	isid    [6]byte
	anyISID bool
	// relPort is the relative target port ID; allPorts (ALL_TG_PT=1)
	// matches every target port.
	relPort  uint16
	allPorts bool
}

func (g *registration) matches(n *Nexus) bool {
	if n == nil {
		return g.initiator == "" && g.allPorts
	}
	return strings.EqualFold(g.initiator, n.InitiatorName) &&
		(g.anyISID || g.isid == n.ISID) &&
		(g.allPorts || g.relPort == n.Port.RelativeID)
}

func (g *registration) sameNexus(o *registration) bool {
	return strings.EqualFold(g.initiator, o.initiator) && g.anyISID == o.anyISID &&
		(g.anyISID || g.isid == o.isid) && g.allPorts == o.allPorts && (g.allPorts || g.relPort == o.relPort)
}

// prState is an LU's reservation state: SCSI-2 and persistent.
type prState struct {
	// active is set while any reservation exists, so that the conflict
	// check costs one atomic load on the I/O path otherwise.
	active atomic.Bool
	mu     struct {
		sync.RWMutex
		generation uint32
		regs       []*registration
		// holder is the reservation holder (for all-registrants types,
		// the registration that reserved; every registrant holds).
		holder  *registration
		resType byte // 0: no persistent reservation
		aptpl   bool
		// scsi2 is the nexus holding a SCSI-2 reservation, if any.
		scsi2 *Nexus
		// scsi2Held distinguishes a held SCSI-2 reservation by a nil Nexus.
		scsi2Held bool
	}
}

func (p *prState) updateActiveLocked() {
	p.active.Store(p.mu.resType != 0 || p.mu.scsi2Held)
}

// findLocked returns n's registration.
func (p *prState) findLocked(n *Nexus) *registration {
	for _, g := range p.mu.regs {
		if g.matches(n) {
			return g
		}
	}
	return nil
}

func (p *prState) isHolderLocked(n *Nexus, reg *registration) bool {
	if p.mu.resType == 0 || reg == nil {
		return false
	}
	if allRegistrants(p.mu.resType) {
		return true
	}
	return reg == p.mu.holder
}

// releaseSCSI2 drops the SCSI-2 reservation held by n (nil: by anyone).
func (p *prState) releaseSCSI2(n *Nexus) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.scsi2Held && (n == nil || p.mu.scsi2 == n) {
		p.mu.scsi2, p.mu.scsi2Held = nil, false
		p.updateActiveLocked()
	}
}

// conflicts reports whether r's command is in RESERVATION CONFLICT
// (SPC-4 5.9.1 table 49, SBC-3 table 8; SPC-2 7.21 for SCSI-2).
func (p *prState) conflicts(r *request) bool {
	if !p.active.Load() {
		return false
	}
	n := r.cmd.Nexus
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.mu.scsi2Held && p.mu.scsi2 != n {
		// SCSI-2: the holder has exclusive access; others may only
		// identify the LU, ask for sense, and release (a no-op).
		switch r.op.op {
		case 0x12, 0xa0, 0x03, 0x17, 0x57:
			return false
		}
		return true
	}
	if p.mu.resType == 0 {
		return false
	}
	reg := p.findLocked(n)
	if r.op.pr == prSCSI2 {
		// SPC-4 5.9.3 (CRH=1): under a persistent reservation, RESERVE
		// and RELEASE from the holder, and RELEASE from a registrant,
		// complete with GOOD and change nothing; anything else conflicts.
		release := r.op.op == 0x17 || r.op.op == 0x57
		return !(p.isHolderLocked(n, reg) || (release && reg != nil))
	}
	if p.isHolderLocked(n, reg) {
		return false
	}
	switch r.op.pr {
	case prRead:
		switch p.mu.resType {
		case prTypeWE, prTypeWERO, prTypeWEAR:
			return false
		case prTypeEA:
			return true
		}
		return reg == nil // EARO, EAAR: registrants may read
	case prWrite:
		switch p.mu.resType {
		case prTypeWE, prTypeEA:
			return true
		}
		return reg == nil // the registrants-only and all-registrants types
	}
	return false
}

// RESERVE (6)/(10) (SPC-2 7.21): a SCSI-2 reservation of the whole LU.
// The dispatcher already refused it when a persistent reservation exists.
func (r *request) reserve() Result {
	p := &r.lu.pr
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.resType != 0 {
		return Result{} // a persistent reservation holder's RESERVE: no effect
	}
	if p.mu.scsi2Held && p.mu.scsi2 != r.cmd.Nexus {
		return Result{Status: StatusReservationConflict}
	}
	p.mu.scsi2, p.mu.scsi2Held = r.cmd.Nexus, true
	p.updateActiveLocked()
	return Result{}
}

// RELEASE (6)/(10): releases the nexus' own SCSI-2 reservation; releasing
// one held by another nexus, or none, is GOOD and changes nothing.
func (r *request) release() Result {
	r.lu.pr.releaseSCSI2(r.cmd.Nexus) // no-op under a persistent reservation: none is held
	return Result{}
}

// nexusesOf returns the states of the LU's nexuses matching any of regs.
func (lu *LU) nexusesOf(regs []*registration, skip *Nexus) []*nexusState {
	var out []*nexusState
	lu.nexuses.Range(func(_, v any) bool {
		ns := v.(*nexusState)
		if ns.nexus == skip {
			return true
		}
		for _, g := range regs {
			if g.matches(ns.nexus) {
				out = append(out, ns)
				break
			}
		}
		return true
	})
	return out
}

// PERSISTENT RESERVE IN (SPC-4 6.14).
func (r *request) persistentReserveIn() Result {
	alloc := uint32(be16(r.cdb[7:9]))
	p := &r.lu.pr
	p.mu.Lock()
	defer p.mu.Unlock()
	var d []byte
	switch r.cdb[1] & 0x1f {
	case 0x00: // READ KEYS
		d = make([]byte, 8, 8+8*len(p.mu.regs))
		binary.BigEndian.PutUint32(d, p.mu.generation)
		for _, g := range p.mu.regs {
			d = binary.BigEndian.AppendUint64(d, g.key)
		}
		binary.BigEndian.PutUint32(d[4:], uint32(len(d)-8))
	case 0x01: // READ RESERVATION
		d = make([]byte, 8, 24)
		binary.BigEndian.PutUint32(d, p.mu.generation)
		if p.mu.resType != 0 {
			var res [16]byte
			if !allRegistrants(p.mu.resType) {
				binary.BigEndian.PutUint64(res[0:], p.mu.holder.key)
			}
			res[13] = p.mu.resType // scope 0 (LU_SCOPE)
			d = append(d, res[:]...)
			binary.BigEndian.PutUint32(d[4:], 16)
		}
	case 0x02: // REPORT CAPABILITIES
		d = make([]byte, 8)
		binary.BigEndian.PutUint16(d, 8)
		d[2] = 0x10 | 0x08 | 0x04 // CRH, SIP_C, ATP_C
		if r.lu.opts.PRStore != nil {
			d[2] |= 0x01 // PTPL_C
		}
		d[3] = 0x80 | 0x10 // TMV, ALLOW COMMANDS 001b
		if p.mu.aptpl {
			d[3] |= 0x01 // PTPL_A
		}
		d[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02 // WR_EX_AR EX_AC_RO WR_EX_RO EX_AC WR_EX
		d[5] = 0x01                             // EX_AC_AR
	case 0x03: // READ FULL STATUS
		d = make([]byte, 8)
		binary.BigEndian.PutUint32(d, p.mu.generation)
		for _, g := range p.mu.regs {
			tid := g.transportID()
			var desc [24]byte
			binary.BigEndian.PutUint64(desc[0:], g.key)
			if g.allPorts {
				desc[12] |= 0x02
			}
			if p.isHolderLocked(nil, g) {
				desc[12] |= 0x01
				desc[13] = p.mu.resType
			}
			binary.BigEndian.PutUint16(desc[18:], g.relPort)
			binary.BigEndian.PutUint32(desc[20:], uint32(len(tid)))
			d = append(append(d, desc[:]...), tid...)
		}
		binary.BigEndian.PutUint32(d[4:], uint32(len(d)-8))
	default:
		return r.fail(invalidCDB(1, 4))
	}
	return dataIn(d, alloc)
}

// transportID encodes the registration's iSCSI TransportID (SPC-4
// 7.6.4.6): format 01b with the ISID when known, else 00b; the name is
// NUL-terminated and padded to a multiple of 4.
func (g *registration) transportID() []byte {
	name := g.initiator
	format := byte(0x00)
	if !g.anyISID {
		name += ",i,0x" + hexISID(g.isid)
		format = 0x40
	}
	n := (len(name) + 1 + 3) &^ 3
	if n < 20 {
		n = 20
	}
	b := make([]byte, 4+n)
	b[0] = format | protoISCSI
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	copy(b[4:], name)
	return b
}

func hexISID(isid [6]byte) string {
	const digits = "0123456789abcdef"
	var b [12]byte
	for i, x := range isid {
		b[2*i], b[2*i+1] = digits[x>>4], digits[x&0x0f]
	}
	return string(b[:])
}

// maxTransportIDLen bounds one TransportID.
const maxTransportIDLen = 4 + 224 + 4

// parseTransportID decodes an iSCSI TransportID from the start of b and
// returns it as a registration (key and ports unset) and its length. It
// never panics.
func parseTransportID(b []byte) (reg registration, n int, ok bool) {
	if len(b) < 4 || b[0]&0x0f != protoISCSI {
		return reg, 0, false
	}
	n = 4 + int(be16(b[2:4]))
	if n > len(b) || n > maxTransportIDLen || n < 8 {
		return reg, 0, false
	}
	name := b[4:n]
	if i := indexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	s := string(name)
	if !validNameChars(s) {
		return reg, 0, false
	}
	switch b[0] >> 6 {
	case 0:
		reg.anyISID = true
	case 1:
		i := indexFold(s, ",i,0x")
		if i < 0 || len(s)-i-5 != 12 {
			return reg, 0, false
		}
		for k := 0; k < 6; k++ {
			hi, ok1 := unhex(s[i+5+2*k])
			lo, ok2 := unhex(s[i+6+2*k])
			if !ok1 || !ok2 {
				return reg, 0, false
			}
			reg.isid[k] = hi<<4 | lo
		}
		s = s[:i]
	default:
		return reg, 0, false
	}
	if s == "" {
		return reg, 0, false
	}
	reg.initiator = s
	return reg, n, true
}

// validNameChars reports whether s may be an iSCSI name: UTF-8 without
// spaces or control characters (RFC 3722 names are stringprep'ed UTF-8).
func validNameChars(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r <= 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			return false
		}
	}
	return true
}

// indexFold is strings.Index for an ASCII lower-case sep, ignoring the
// case of ASCII letters in s, with offsets into s itself (strings.ToLower
// may change the length of non-ASCII text).
func indexFold(s, sep string) int {
	for i := 0; i+len(sep) <= len(s); i++ {
		match := true
		for k := 0; k < len(sep); k++ {
			c := s[i+k]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != sep[k] {
				match = false
				break
			}
		}
		if match {
			return i
		}
	}
	return -1
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// nexusRegistration is the registration a nexus makes for itself.
func nexusRegistration(n *Nexus, key uint64, allPorts bool) *registration {
	g := &registration{key: key, allPorts: allPorts || n == nil}
	if n != nil {
		g.initiator, g.isid, g.relPort = n.InitiatorName, n.ISID, n.Port.RelativeID
	}
	return g
}

// prOut is the decoded PERSISTENT RESERVE OUT parameter list.
type prOut struct {
	key, saKey              uint64
	specIPT, allTgPt, aptpl bool
	tids                    []registration // SPEC_I_PT transport IDs
	moveTID                 registration   // REGISTER AND MOVE
	moveRelPort             uint16
	unreg                   bool
}

// PERSISTENT RESERVE OUT (SPC-4 6.15, 5.9.7-5.9.11).
func (r *request) persistentReserveOut() Result {
	sa := r.cdb[1] & 0x1f
	scope, typ := r.cdb[2]>>4, r.cdb[2]&0x0f
	plen := int(be32(r.cdb[5:9]))
	r.xfer = uint32(plen)
	if len(r.cmd.DataOut) < plen {
		return r.fail(illegal(ascParamListLength))
	}
	par := r.cmd.DataOut[:plen]
	var o prOut
	if sa == 0x07 { // REGISTER AND MOVE
		if plen < 24 {
			return r.fail(illegal(ascParamListLength))
		}
		o.key, o.saKey = be64(par[0:8]), be64(par[8:16])
		o.unreg, o.aptpl = par[17]&0x02 != 0, par[17]&0x01 != 0
		o.moveRelPort = be16(par[18:20])
		tl := int(be32(par[20:24]))
		if tl > plen-24 {
			return r.fail(illegal(ascParamListLength))
		}
		tid, n, ok := parseTransportID(par[24 : 24+tl])
		if !ok || n != tl {
			return r.fail(invalidParam(24, -1))
		}
		o.moveTID = tid
	} else {
		if plen < 24 {
			return r.fail(illegal(ascParamListLength))
		}
		o.key, o.saKey = be64(par[0:8]), be64(par[8:16])
		o.specIPT, o.allTgPt, o.aptpl = par[20]&0x08 != 0, par[20]&0x04 != 0, par[20]&0x01 != 0
		if o.specIPT {
			if sa != 0x00 {
				return r.fail(invalidParam(20, 3))
			}
			if plen < 28 {
				return r.fail(illegal(ascParamListLength))
			}
			tl := int(be32(par[24:28]))
			if tl != plen-28 {
				return r.fail(illegal(ascParamListLength))
			}
			for off := 28; off < plen; {
				tid, n, ok := parseTransportID(par[off:])
				if !ok {
					return r.fail(invalidParam(off, -1))
				}
				o.tids = append(o.tids, tid)
				off += n
			}
		} else if plen != 24 {
			return r.fail(illegal(ascParamListLength))
		}
	}
	if o.aptpl && r.lu.opts.PRStore == nil && (sa == 0x00 || sa == 0x06 || sa == 0x07) {
		if sa == 0x07 {
			return r.fail(invalidParam(17, 0))
		}
		return r.fail(invalidParam(20, 0))
	}
	switch sa {
	case 0x01, 0x02, 0x04, 0x05, 0x07:
		if scope != 0 {
			return r.fail(invalidCDB(2, 7))
		}
		if sa != 0x02 || typ != 0 {
			if !validPRType(typ) && !(sa == 0x07) {
				return r.fail(invalidCDB(2, 3))
			}
		}
	}
	if o.allTgPt && (sa != 0x00 && sa != 0x06) {
		return r.fail(invalidParam(20, 2))
	}

	p := &r.lu.pr
	p.mu.Lock()
	before := p.snapshotLocked()
	res, notify, aborts := r.prOutLocked(sa, typ, &o)
	var saveErr error
	if res.Status == StatusGood && r.lu.opts.PRStore != nil && (p.mu.aptpl || before.APTPL) {
		saveErr = r.lu.savePRLocked(r.ctx)
		if saveErr != nil {
			p.restoreLocked(before)
			notify, aborts = nil, nil
		}
	}
	p.updateActiveLocked()
	p.mu.Unlock()
	if saveErr != nil {
		r.lu.log.Error("persisting reservations failed", "err", saveErr)
		return r.fail(senseData{key: senseIllegalRequest, asc: ascInsufficientRegResources})
	}
	for _, u := range notify {
		for _, ns := range r.lu.nexusesOf(u.regs, r.cmd.Nexus) {
			ns.addUA(u.code)
		}
	}
	if len(aborts) > 0 {
		nexusOf := func(x *Task) bool {
			for _, g := range aborts {
				if g.matches(x.cmd.Nexus) && x.cmd.Nexus != r.cmd.Nexus {
					return true
				}
			}
			return false
		}
		r.t.abort(context.WithoutCancel(r.ctx), []*taskQueue{&r.lu.tasks}, nexusOf, errTaskAborted)
	}
	return res
}

// uaNote is a unit attention for the nexuses of some registrations.
type uaNote struct {
	regs []*registration
	code asc
}

func conflict() Result { return Result{Status: StatusReservationConflict} }

// prOutLocked performs one service action on the locked state.
func (r *request) prOutLocked(sa, typ byte, o *prOut) (res Result, notify []uaNote, aborts []*registration) {
	p := &r.lu.pr
	n := r.cmd.Nexus
	reg := p.findLocked(n)
	switch sa {
	case 0x00, 0x06: // REGISTER, REGISTER AND IGNORE EXISTING KEY
		ignore := sa == 0x06
		if reg == nil {
			if !ignore && o.key != 0 {
				return conflict(), nil, nil
			}
			if o.saKey == 0 {
				return Result{}, nil, nil
			}
			newRegs := []*registration{nexusRegistration(n, o.saKey, o.allTgPt)}
			for i := range o.tids {
				g := o.tids[i]
				g.key = o.saKey
				g.allPorts = o.allTgPt
				if n != nil {
					g.relPort = n.Port.RelativeID
				}
				for _, x := range append(p.mu.regs, newRegs...) {
					if x.sameNexus(&g) {
						return r.fail(invalidParam(28, -1)), nil, nil
					}
				}
				newRegs = append(newRegs, &g)
			}
			if len(p.mu.regs)+len(newRegs) > maxRegistrations {
				return r.fail(illegal(ascInsufficientRegResources)), nil, nil
			}
			p.mu.regs = append(p.mu.regs, newRegs...)
			p.mu.aptpl = o.aptpl
			p.mu.generation++
			return Result{}, nil, nil
		}
		if !ignore && o.key != reg.key {
			return conflict(), nil, nil
		}
		if o.specIPT {
			return r.fail(invalidParam(20, 3)), nil, nil
		}
		p.mu.generation++
		p.mu.aptpl = o.aptpl
		if o.saKey != 0 {
			reg.key = o.saKey
			return Result{}, nil, nil
		}
		// Unregister. The holder of a reservation that is not for all
		// registrants releases it; so does the last registrant of an
		// all-registrants one (SPC-4 5.9.11.2).
		p.removeLocked(reg)
		if p.mu.resType != 0 {
			if (!allRegistrants(p.mu.resType) && p.mu.holder == reg) ||
				(allRegistrants(p.mu.resType) && len(p.mu.regs) == 0) {
				t := p.mu.resType
				p.mu.resType, p.mu.holder = 0, nil
				if t == prTypeWERO || t == prTypeEARO {
					notify = append(notify, uaNote{p.mu.regs, ascReservationsReleased})
				}
			} else if allRegistrants(p.mu.resType) && p.mu.holder == reg {
				p.mu.holder = p.mu.regs[0]
			}
		}
		return Result{}, notify, nil

	case 0x01: // RESERVE
		if reg == nil || o.key != reg.key {
			return conflict(), nil, nil
		}
		if p.mu.resType != 0 {
			if p.isHolderLocked(n, reg) && p.mu.resType == typ {
				return Result{}, nil, nil
			}
			return conflict(), nil, nil
		}
		p.mu.resType, p.mu.holder = typ, reg
		return Result{}, nil, nil

	case 0x02: // RELEASE
		if reg == nil || o.key != reg.key {
			return conflict(), nil, nil
		}
		if p.mu.resType == 0 || !p.isHolderLocked(n, reg) {
			return Result{}, nil, nil
		}
		if p.mu.resType != typ {
			return r.fail(illegal(ascInvalidReleaseOfPR)), nil, nil
		}
		t := p.mu.resType
		p.mu.resType, p.mu.holder = 0, nil
		if t != prTypeWE && t != prTypeEA {
			notify = append(notify, uaNote{p.mu.regs, ascReservationsReleased})
		}
		return Result{}, notify, nil

	case 0x03: // CLEAR
		if reg == nil || o.key != reg.key {
			return conflict(), nil, nil
		}
		notify = append(notify, uaNote{p.mu.regs, ascReservationsPreempted})
		p.mu.regs, p.mu.resType, p.mu.holder = nil, 0, nil
		p.mu.generation++
		return Result{}, notify, nil

	case 0x04, 0x05: // PREEMPT, PREEMPT AND ABORT
		if reg == nil || o.key != reg.key {
			return conflict(), nil, nil
		}
		abort := sa == 0x05
		removeKey := func(key uint64) []*registration {
			var gone []*registration
			keep := p.mu.regs[:0]
			for _, g := range p.mu.regs {
				if g.key == key && g != reg {
					gone = append(gone, g)
				} else {
					keep = append(keep, g)
				}
			}
			p.mu.regs = keep
			return gone
		}
		var gone []*registration
		switch {
		case p.mu.resType == 0 || (allRegistrants(p.mu.resType) && o.saKey != 0) ||
			(!allRegistrants(p.mu.resType) && o.saKey != p.mu.holder.key):
			// Preempt registrations only (SPC-4 5.9.11.4.2/3).
			if o.saKey == 0 {
				return r.fail(invalidParam(8, -1)), nil, nil
			}
			gone = removeKey(o.saKey)
			if len(gone) == 0 {
				return conflict(), nil, nil
			}
			if p.mu.holder != nil && !containsReg(p.mu.regs, p.mu.holder) {
				p.mu.holder = p.mu.regs[0]
			}
		case allRegistrants(p.mu.resType):
			// SA key 0 under an all-registrants reservation: remove every
			// other registration and reserve anew.
			for _, g := range p.mu.regs {
				if g != reg {
					gone = append(gone, g)
				}
			}
			p.mu.regs = []*registration{reg}
			p.mu.resType, p.mu.holder = typ, reg
		default:
			// SA key is the holder's: remove its registrations, take the
			// reservation with the new type.
			oldType := p.mu.resType
			gone = removeKey(o.saKey)
			p.mu.resType, p.mu.holder = typ, reg
			if oldType != typ {
				var others []*registration
				for _, g := range p.mu.regs {
					if g != reg {
						others = append(others, g)
					}
				}
				notify = append(notify, uaNote{others, ascReservationsReleased})
			}
		}
		p.mu.generation++
		notify = append(notify, uaNote{gone, ascRegistrationsPreempted})
		if abort {
			aborts = gone
		}
		return Result{}, notify, aborts

	case 0x07: // REGISTER AND MOVE
		if reg == nil || o.key != reg.key {
			return conflict(), nil, nil
		}
		if p.mu.resType == 0 || allRegistrants(p.mu.resType) || p.mu.holder != reg {
			return conflict(), nil, nil
		}
		if o.saKey == 0 {
			return r.fail(invalidParam(8, -1)), nil, nil
		}
		dst := o.moveTID
		dst.relPort = o.moveRelPort
		if dst.sameNexus(reg) || (n != nil && dst.matches(n)) {
			return r.fail(invalidParam(24, -1)), nil, nil
		}
		var dreg *registration
		for _, g := range p.mu.regs {
			if g.sameNexus(&dst) {
				dreg = g
			}
		}
		if dreg == nil {
			dst.key = o.saKey
			dreg = &dst
			p.mu.regs = append(p.mu.regs, dreg)
		} else {
			dreg.key = o.saKey
		}
		p.mu.holder = dreg
		if o.unreg {
			p.removeLocked(reg)
		}
		p.mu.aptpl = o.aptpl
		p.mu.generation++
		return Result{}, nil, nil
	}
	return r.fail(invalidCDB(1, 4)), nil, nil
}

func containsReg(regs []*registration, g *registration) bool {
	for _, x := range regs {
		if x == g {
			return true
		}
	}
	return false
}

func (p *prState) removeLocked(g *registration) {
	keep := p.mu.regs[:0]
	for _, x := range p.mu.regs {
		if x != g {
			keep = append(keep, x)
		}
	}
	p.mu.regs = keep
}

// reservationEntries are the reservation commands of the command table.
func reservationEntries() []opInfo {
	const ctl = 0x00
	return []opInfo{
		{name: "RESERVE (6)", op: 0x16, handle: (*request).reserve, usage: u(0xff, 0, 0, 0, 0, ctl), pr: prSCSI2, timeout: 5},
		{name: "RELEASE (6)", op: 0x17, handle: (*request).release, usage: u(0xff, 0, 0, 0, 0, ctl), pr: prSCSI2, timeout: 5},
		{name: "RESERVE (10)", op: 0x56, handle: (*request).reserve, usage: u(0xff, 0, 0, 0, 0, 0, 0, 0, 0, ctl), pr: prSCSI2, timeout: 5},
		{name: "RELEASE (10)", op: 0x57, handle: (*request).release, usage: u(0xff, 0, 0, 0, 0, 0, 0, 0, 0, ctl), pr: prSCSI2, timeout: 5},
		{name: "PERSISTENT RESERVE IN", op: 0x5e, sa: 0x00, hasSA: true, dir: dirIn, handle: (*request).persistentReserveIn, usage: u(0xff, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE IN", op: 0x5e, sa: 0x01, hasSA: true, dir: dirIn, handle: (*request).persistentReserveIn, usage: u(0xff, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE IN", op: 0x5e, sa: 0x02, hasSA: true, dir: dirIn, handle: (*request).persistentReserveIn, usage: u(0xff, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE IN", op: 0x5e, sa: 0x03, hasSA: true, dir: dirIn, handle: (*request).persistentReserveIn, usage: u(0xff, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE OUT", op: 0x5f, sa: 0x00, hasSA: true, dir: dirOut, handle: (*request).persistentReserveOut, usage: u(0xff, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE OUT", op: 0x5f, sa: 0x01, hasSA: true, dir: dirOut, handle: (*request).persistentReserveOut, usage: u(0xff, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE OUT", op: 0x5f, sa: 0x02, hasSA: true, dir: dirOut, handle: (*request).persistentReserveOut, usage: u(0xff, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE OUT", op: 0x5f, sa: 0x03, hasSA: true, dir: dirOut, handle: (*request).persistentReserveOut, usage: u(0xff, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE OUT", op: 0x5f, sa: 0x04, hasSA: true, dir: dirOut, handle: (*request).persistentReserveOut, usage: u(0xff, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE OUT", op: 0x5f, sa: 0x05, hasSA: true, dir: dirOut, handle: (*request).persistentReserveOut, usage: u(0xff, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE OUT", op: 0x5f, sa: 0x06, hasSA: true, dir: dirOut, handle: (*request).persistentReserveOut, usage: u(0xff, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
		{name: "PERSISTENT RESERVE OUT", op: 0x5f, sa: 0x07, hasSA: true, dir: dirOut, handle: (*request).persistentReserveOut, usage: u(0xff, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, ctl), alua: aluaStandby, timeout: 5},
	}
}
