package scsi

// The command set as data. One entry per opcode (and service action) gives
// everything the dispatcher needs before a handler runs: CDB length, data
// direction, the CDB usage mask (which bits the device server examines; it
// is both the REPORT SUPPORTED OPERATION CODES usage data and the reserved-
// bit check), the reservation-conflict and ALUA classes, and whether the
// command reports a pending unit attention.

// dataDir is a command's data direction.
type dataDir uint8

const (
	dirNone dataDir = iota
	dirIn
	dirOut
)

// prClass is how a command fares against a persistent reservation it does
// not hold (SPC-4 5.9.1, table 49 "SPC commands that are allowed in the
// presence of various reservations", and SBC-3 table 8).
type prClass uint8

const (
	// prAllowed commands are never in conflict.
	prAllowed prClass = iota
	// prRead commands read the medium or LU state: allowed under the
	// Write Exclusive types, conflicting under the Exclusive Access types.
	prRead
	// prWrite commands change the medium or LU state: conflicting under
	// every type unless the nexus may write.
	prWrite
	// prSCSI2 commands (RESERVE/RELEASE 6/10) conflict with any
	// persistent reservation, holder or not (SPC-4 5.9.1).
	prSCSI2
)

// aluaClass is which ALUA states allow a command (SPC-4 5.15.2.4).
type aluaClass uint8

const (
	// aluaActive commands need an active (optimized or not) port.
	aluaActive aluaClass = iota
	// aluaStandby commands also run in the standby state.
	aluaStandby
	// aluaAny commands run in every state, unavailable and transitioning too.
	aluaAny
)

// handler executes a command whose CDB passed the generic checks.
type handler func(r *request) Result

// opInfo describes one command.
type opInfo struct {
	name   string
	op     byte
	sa     uint16 // service action, when hasSA
	hasSA  bool
	dir    dataDir
	handle handler
	// usage is the CDB usage data (SPC-4 6.35.3): usage[i] has the bits of
	// CDB byte i the device server examines. len(usage) is the CDB length.
	usage []byte
	// noUA commands neither report nor clear a pending unit attention
	// (SAM-5 5.14: INQUIRY, REPORT LUNS, REQUEST SENSE).
	noUA bool
	pr   prClass
	alua aluaClass
	// supported reports whether lu can execute the command (optional
	// Device capabilities); nil means always. Unsupported commands are
	// INVALID COMMAND OPERATION CODE and absent from REPORT SUPPORTED
	// OPERATION CODES.
	supported func(lu *LU) bool
	// timeout is the nominal command timeout in seconds (RCTD), 0 unknown.
	timeout uint32
}

func (o *opInfo) cdbLen() int { return len(o.usage) }

// commandTable is the immutable command set, indexed by opcode; commands
// with service actions are found through sa.
type commandTable struct {
	byOp [256]*opInfo
	sa   [256][]*opInfo // opcode → its service actions, nil if none
	all  []*opInfo      // in opcode/service action order
}

func (ct *commandTable) lookup(cdb []byte) (op *opInfo, saUnknown bool) {
	code := cdb[0]
	if sas := ct.sa[code]; sas != nil {
		if len(cdb) < 2 {
			return nil, true
		}
		sa := uint16(cdb[1] & 0x1f)
		for _, o := range sas {
			if o.sa == sa {
				return o, false
			}
		}
		return nil, true
	}
	return ct.byOp[code], false
}

// newCommandTable builds the table from the entry list. It panics on a
// malformed entry: the list is a compile-time constant in effect, and a
// test builds it.
func newCommandTable(entries []opInfo) *commandTable {
	ct := &commandTable{}
	for i := range entries {
		o := &entries[i]
		if len(o.usage) < 6 || o.usage[0] != 0xff || o.handle == nil {
			panic("scsi: malformed command table entry " + o.name)
		}
		if o.hasSA {
			ct.sa[o.op] = append(ct.sa[o.op], o)
		} else {
			if ct.byOp[o.op] != nil {
				panic("scsi: duplicate opcode " + o.name)
			}
			ct.byOp[o.op] = o
		}
		ct.all = append(ct.all, o)
	}
	return ct
}

// checkReserved validates the CDB against the usage mask: a bit the
// device server does not examine must be zero (SPC-4 4.4.2: reserved
// fields are checked). The control byte's vendor-specific bits (7:6) are
// ignored; NACA and LINK (bits 2, 0) are unsupported and therefore not in
// the mask, so setting them yields INVALID FIELD IN CDB pointing at them.
func (o *opInfo) checkReserved(cdb []byte) (senseData, bool) {
	n := len(o.usage)
	for i := 1; i < n; i++ {
		bad := cdb[i] &^ o.usage[i]
		if i == n-1 {
			bad &^= 0xc0
		}
		if bad != 0 {
			return invalidCDB(i, topBit(bad)), false
		}
	}
	return senseData{}, true
}

// Usage masks. "ctl" is the control byte: 0 (NACA and LINK unsupported).
func u(b ...byte) []byte { return b }

// hasUnmap and hasLBAStatus: UNMAP and GET LBA STATUS exist exactly when
// logical block provisioning management is on (LBPME=1, VPD 0xB2 listed).
func hasUnmap(lu *LU) bool     { return lu.unmapper != nil && lu.dev.Info().Thin }
func hasLBAStatus(lu *LU) bool { return hasUnmap(lu) && lu.lbaStatus != nil }

func commandEntries() []opInfo {
	const ctl = 0x00
	return []opInfo{
		{name: "TEST UNIT READY", op: 0x00, handle: (*request).testUnitReady, usage: u(0xff, 0, 0, 0, 0, ctl), alua: aluaActive, timeout: 1},
		{name: "REQUEST SENSE", op: 0x03, dir: dirIn, handle: (*request).requestSense, usage: u(0xff, 0x01, 0, 0, 0xff, ctl), noUA: true, alua: aluaAny, timeout: 1},
		{name: "READ (6)", op: 0x08, dir: dirIn, handle: (*request).read6, usage: u(0xff, 0x1f, 0xff, 0xff, 0xff, ctl), pr: prRead, timeout: 30},
		{name: "WRITE (6)", op: 0x0a, dir: dirOut, handle: (*request).write6, usage: u(0xff, 0x1f, 0xff, 0xff, 0xff, ctl), pr: prWrite, timeout: 30},
		{name: "INQUIRY", op: 0x12, dir: dirIn, handle: (*request).inquiry, usage: u(0xff, 0x01, 0xff, 0xff, 0xff, ctl), noUA: true, alua: aluaAny, timeout: 1},
		{name: "MODE SELECT (6)", op: 0x15, dir: dirOut, handle: (*request).modeSelect, usage: u(0xff, 0x11, 0, 0, 0xff, ctl), pr: prWrite, alua: aluaStandby, timeout: 5},
		{name: "MODE SENSE (6)", op: 0x1a, dir: dirIn, handle: (*request).modeSense, usage: u(0xff, 0x08, 0xff, 0xff, 0xff, ctl), pr: prRead, alua: aluaStandby, timeout: 5},
		{name: "START STOP UNIT", op: 0x1b, handle: (*request).startStopUnit, usage: u(0xff, 0x01, 0, 0x0f, 0xf7, ctl), timeout: 60},
		{name: "SEND DIAGNOSTIC", op: 0x1d, handle: (*request).sendDiagnostic, usage: u(0xff, 0xf7, 0, 0xff, 0xff, ctl), pr: prWrite, alua: aluaStandby, timeout: 60},
		{name: "PREVENT ALLOW MEDIUM REMOVAL", op: 0x1e, handle: (*request).preventAllow, usage: u(0xff, 0, 0, 0, 0x03, ctl), timeout: 5},
		{name: "READ CAPACITY (10)", op: 0x25, dir: dirIn, handle: (*request).readCapacity10, usage: u(0xff, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, ctl), timeout: 1},
		{name: "READ (10)", op: 0x28, dir: dirIn, handle: (*request).read10, usage: u(0xff, 0xfe, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, ctl), pr: prRead, timeout: 30},
		{name: "WRITE (10)", op: 0x2a, dir: dirOut, handle: (*request).write10, usage: u(0xff, 0xfa, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, ctl), pr: prWrite, timeout: 30},
		{name: "WRITE AND VERIFY (10)", op: 0x2e, dir: dirOut, handle: (*request).writeVerify, usage: u(0xff, 0xf6, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, ctl), pr: prWrite, timeout: 30},
		{name: "VERIFY (10)", op: 0x2f, dir: dirOut, handle: (*request).verify, usage: u(0xff, 0xf6, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, ctl), pr: prRead, timeout: 30},
		{name: "PRE-FETCH (10)", op: 0x34, handle: (*request).prefetch, usage: u(0xff, 0x02, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, ctl), pr: prRead, timeout: 30},
		{name: "SYNCHRONIZE CACHE (10)", op: 0x35, handle: (*request).synchronizeCache, usage: u(0xff, 0x06, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, ctl), pr: prWrite, timeout: 60},
		{name: "READ DEFECT DATA (10)", op: 0x37, dir: dirIn, handle: (*request).readDefectData, usage: u(0xff, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, ctl), pr: prRead, timeout: 5},
		{name: "WRITE SAME (10)", op: 0x41, dir: dirOut, handle: (*request).writeSame, usage: u(0xff, 0xf8, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, ctl), pr: prWrite, timeout: 120},
		{name: "UNMAP", op: 0x42, dir: dirOut, handle: (*request).unmap, usage: u(0xff, 0x01, 0, 0, 0, 0, 0x3f, 0xff, 0xff, ctl), pr: prWrite, supported: hasUnmap, timeout: 120},
		{name: "MODE SELECT (10)", op: 0x55, dir: dirOut, handle: (*request).modeSelect, usage: u(0xff, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, ctl), pr: prWrite, alua: aluaStandby, timeout: 5},
		{name: "MODE SENSE (10)", op: 0x5a, dir: dirIn, handle: (*request).modeSense, usage: u(0xff, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, ctl), pr: prRead, alua: aluaStandby, timeout: 5},
		{name: "READ (16)", op: 0x88, dir: dirIn, handle: (*request).read16, usage: u(0xff, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, ctl), pr: prRead, timeout: 30},
		{name: "WRITE (16)", op: 0x8a, dir: dirOut, handle: (*request).write16, usage: u(0xff, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, ctl), pr: prWrite, timeout: 30},
		{name: "WRITE AND VERIFY (16)", op: 0x8e, dir: dirOut, handle: (*request).writeVerify, usage: u(0xff, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, ctl), pr: prWrite, timeout: 30},
		{name: "VERIFY (16)", op: 0x8f, dir: dirOut, handle: (*request).verify, usage: u(0xff, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, ctl), pr: prRead, timeout: 30},
		{name: "PRE-FETCH (16)", op: 0x90, handle: (*request).prefetch, usage: u(0xff, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, ctl), pr: prRead, timeout: 30},
		{name: "SYNCHRONIZE CACHE (16)", op: 0x91, handle: (*request).synchronizeCache, usage: u(0xff, 0x06, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, ctl), pr: prWrite, timeout: 60},
		{name: "WRITE SAME (16)", op: 0x93, dir: dirOut, handle: (*request).writeSame, usage: u(0xff, 0xf9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, ctl), pr: prWrite, timeout: 120},
		{name: "ORWRITE (16)", op: 0x8b, dir: dirOut, handle: (*request).orWrite, usage: u(0xff, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, ctl), pr: prWrite, timeout: 30},
		{name: "READ CAPACITY (16)", op: 0x9e, sa: 0x10, hasSA: true, dir: dirIn, handle: (*request).readCapacity16, usage: u(0xff, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, ctl), timeout: 1},
		{name: "GET LBA STATUS", op: 0x9e, sa: 0x12, hasSA: true, dir: dirIn, handle: (*request).getLBAStatus, usage: u(0xff, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, ctl), pr: prRead, supported: hasLBAStatus, timeout: 5},
		{name: "REPORT LUNS", op: 0xa0, dir: dirIn, handle: (*request).reportLUNs, usage: u(0xff, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, ctl), noUA: true, alua: aluaAny, timeout: 1},
		{name: "REPORT SUPPORTED OPERATION CODES", op: 0xa3, sa: 0x0c, hasSA: true, dir: dirIn, handle: (*request).reportSupportedOpcodes, usage: u(0xff, 0x1f, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, ctl), alua: aluaAny, timeout: 1},
		{name: "REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS", op: 0xa3, sa: 0x0d, hasSA: true, dir: dirIn, handle: (*request).reportSupportedTMFs, usage: u(0xff, 0x1f, 0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, ctl), alua: aluaAny, timeout: 1},
		{name: "READ (12)", op: 0xa8, dir: dirIn, handle: (*request).read12, usage: u(0xff, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbf, ctl), pr: prRead, timeout: 30},
		{name: "WRITE (12)", op: 0xaa, dir: dirOut, handle: (*request).write12, usage: u(0xff, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbf, ctl), pr: prWrite, timeout: 30},
		{name: "READ DEFECT DATA (12)", op: 0xb7, dir: dirIn, handle: (*request).readDefectData, usage: u(0xff, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, ctl), pr: prRead, timeout: 5},
		{name: "WRITE AND VERIFY (12)", op: 0xae, dir: dirOut, handle: (*request).writeVerify, usage: u(0xff, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, ctl), pr: prWrite, timeout: 30},
		{name: "VERIFY (12)", op: 0xaf, dir: dirOut, handle: (*request).verify, usage: u(0xff, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, ctl), pr: prRead, timeout: 30},
	}
}
