package pdu

import (
	"encoding/binary"
	"fmt"
)

// BHSLen is the length of the Basic Header Segment.
const BHSLen = 48

// Opcode is the six-bit iSCSI opcode (byte 0, bits 0-5).
type Opcode uint8

// Initiator opcodes (RFC 7143 11.1.1).
const (
	OpNOPOut       Opcode = 0x00
	OpSCSICommand  Opcode = 0x01
	OpTaskMgmtReq  Opcode = 0x02
	OpLoginReq     Opcode = 0x03
	OpTextReq      Opcode = 0x04
	OpDataOut      Opcode = 0x05
	OpLogoutReq    Opcode = 0x06
	OpSNACK        Opcode = 0x10
	OpNOPIn        Opcode = 0x20
	OpSCSIResponse Opcode = 0x21
	OpTaskMgmtResp Opcode = 0x22
	OpLoginResp    Opcode = 0x23
	OpTextResp     Opcode = 0x24
	OpDataIn       Opcode = 0x25
	OpLogoutResp   Opcode = 0x26
	OpR2T          Opcode = 0x31
	OpAsyncMessage Opcode = 0x32
	OpReject       Opcode = 0x3f
)

var opcodeNames = [64]string{
	OpNOPOut: "NOP-Out", OpSCSICommand: "SCSI-Command", OpTaskMgmtReq: "TMF-Request",
	OpLoginReq: "Login-Request", OpTextReq: "Text-Request", OpDataOut: "Data-Out",
	OpLogoutReq: "Logout-Request", OpSNACK: "SNACK", OpNOPIn: "NOP-In",
	OpSCSIResponse: "SCSI-Response", OpTaskMgmtResp: "TMF-Response", OpLoginResp: "Login-Response",
	OpTextResp: "Text-Response", OpDataIn: "Data-In", OpLogoutResp: "Logout-Response",
	OpR2T: "R2T", OpAsyncMessage: "Async-Message", OpReject: "Reject",
}

func (o Opcode) String() string {
	if int(o) < len(opcodeNames) && opcodeNames[o] != "" {
		return opcodeNames[o]
	}
	return fmt.Sprintf("opcode(0x%02x)", uint8(o))
}

// Known reports whether o is an opcode RFC 7143 defines (either direction;
// vendor-specific opcodes 0x1c-0x1e and 0x3c-0x3e are not known).
func (o Opcode) Known() bool { return int(o) < len(opcodeNames) && opcodeNames[o] != "" }

// FromInitiator reports whether o is an initiator opcode.
func (o Opcode) FromInitiator() bool { return o < 0x20 }

// ReservedTag is the all-ones task tag / target transfer tag.
const ReservedTag uint32 = 0xffffffff

// BHS is a Basic Header Segment. Its methods read and write the fields
// every opcode shares; the opcode-specific types below (SCSICommand, ...)
// encode and decode the rest.
//
//	Byte/     0       |       1       |       2       |       3       |
//	    +---------------+---------------+---------------+---------------+
//	   0|.|I| Opcode    |F|  Opcode-specific fields                     |
//	    +---------------+---------------+---------------+---------------+
//	   4|TotalAHSLength | DataSegmentLength                             |
//	    +---------------+---------------+---------------+---------------+
//	   8| LUN or Opcode-specific fields                                 |
//	    +                                                               +
//	  12|                                                               |
//	    +---------------+---------------+---------------+---------------+
//	  16| Initiator Task Tag                                            |
//	    +---------------+---------------+---------------+---------------+
//	  20/ Opcode-specific fields                                        /
//	 +/                                                               /
//	    +---------------+---------------+---------------+---------------+
//	  48
type BHS [BHSLen]byte

// Opcode returns the opcode.
func (b *BHS) Opcode() Opcode { return Opcode(b[0] & 0x3f) }

// Immediate reports the I bit (immediate delivery).
func (b *BHS) Immediate() bool { return b[0]&0x40 != 0 }

// Final reports the F bit (byte 1, bit 7).
func (b *BHS) Final() bool { return b[1]&0x80 != 0 }

// TotalAHSLength returns the AHS length in bytes (the field counts words).
func (b *BHS) TotalAHSLength() int { return int(b[4]) * 4 }

// DataSegmentLength returns the data segment length without padding.
func (b *BHS) DataSegmentLength() int {
	return int(b[5])<<16 | int(b[6])<<8 | int(b[7])
}

// SetLengths sets TotalAHSLength (ahsLen rounded up to words, at most 1020)
// and DataSegmentLength (at most 1<<24-1). Larger values are clamped; the
// encoders never produce them.
func (b *BHS) SetLengths(ahsLen, dataLen int) {
	w := (ahsLen + 3) / 4
	if w > 255 {
		w = 255
	}
	b[4] = byte(w)
	if dataLen > MaxDataSegmentLength {
		dataLen = MaxDataSegmentLength
	}
	b[5], b[6], b[7] = byte(dataLen>>16), byte(dataLen>>8), byte(dataLen)
}

// LUN returns bytes 8-15.
func (b *BHS) LUN() [8]byte { return [8]byte(b[8:16]) }

// ITT returns the initiator task tag.
func (b *BHS) ITT() uint32 { return binary.BigEndian.Uint32(b[16:]) }

// Word returns the big-endian 32-bit field at byte offset off (a multiple
// of 4 below 48). The SN fields shared by every target PDU (StatSN 24,
// ExpCmdSN 28, MaxCmdSN 32) are read and written this way by connection
// code that fills them at send time.
func (b *BHS) Word(off int) uint32 { return binary.BigEndian.Uint32(b[off&^3%BHSLen:]) }

// SetWord sets the 32-bit field at byte offset off (see Word).
func (b *BHS) SetWord(off int, v uint32) { binary.BigEndian.PutUint32(b[off&^3%BHSLen:], v) }

// Offsets of the sequence number fields every target PDU carries.
const (
	OffStatSN   = 24
	OffExpCmdSN = 28
	OffMaxCmdSN = 32
)

func (b *BHS) u32(off int) uint32      { return binary.BigEndian.Uint32(b[off:]) }
func (b *BHS) put32(off int, v uint32) { binary.BigEndian.PutUint32(b[off:], v) }
func (b *BHS) u16(off int) uint16      { return binary.BigEndian.Uint16(b[off:]) }
func (b *BHS) put16(off int, v uint16) { binary.BigEndian.PutUint16(b[off:], v) }

func (b *BHS) start(op Opcode, immediate bool) {
	*b = BHS{}
	b[0] = byte(op)
	if immediate {
		b[0] |= 0x40
	}
}

func (b *BHS) expect(op Opcode) error {
	if got := b.Opcode(); got != op {
		return &OpcodeError{Want: op, Got: got}
	}
	return nil
}

func bit(v bool, m byte) byte {
	if v {
		return m
	}
	return 0
}

// NOPOut is a NOP-Out (11.18).
type NOPOut struct {
	Immediate bool
	LUN       [8]byte
	ITT       uint32
	TTT       uint32
	CmdSN     uint32
	ExpStatSN uint32
}

// Encode writes n into b (DataSegmentLength is left zero: see SetLengths).
func (n *NOPOut) Encode(b *BHS) {
	b.start(OpNOPOut, n.Immediate)
	b[1] = 0x80
	copy(b[8:16], n.LUN[:])
	b.put32(16, n.ITT)
	b.put32(20, n.TTT)
	b.put32(24, n.CmdSN)
	b.put32(28, n.ExpStatSN)
}

// Decode reads n from b.
func (n *NOPOut) Decode(b *BHS) error {
	if err := b.expect(OpNOPOut); err != nil {
		return err
	}
	*n = NOPOut{Immediate: b.Immediate(), LUN: b.LUN(), ITT: b.ITT(), TTT: b.u32(20),
		CmdSN: b.u32(24), ExpStatSN: b.u32(28)}
	return nil
}

// NOPIn is a NOP-In (11.19).
type NOPIn struct {
	LUN      [8]byte
	ITT      uint32
	TTT      uint32
	StatSN   uint32
	ExpCmdSN uint32
	MaxCmdSN uint32
}

// Encode writes n into b.
func (n *NOPIn) Encode(b *BHS) {
	b.start(OpNOPIn, false)
	b[1] = 0x80
	copy(b[8:16], n.LUN[:])
	b.put32(16, n.ITT)
	b.put32(20, n.TTT)
	b.put32(24, n.StatSN)
	b.put32(28, n.ExpCmdSN)
	b.put32(32, n.MaxCmdSN)
}

// Decode reads n from b.
func (n *NOPIn) Decode(b *BHS) error {
	if err := b.expect(OpNOPIn); err != nil {
		return err
	}
	*n = NOPIn{LUN: b.LUN(), ITT: b.ITT(), TTT: b.u32(20), StatSN: b.u32(24),
		ExpCmdSN: b.u32(28), MaxCmdSN: b.u32(32)}
	return nil
}

// SCSICommand is a SCSI Command (11.3).
type SCSICommand struct {
	Immediate bool
	Final     bool
	Read      bool
	Write     bool
	Attr      uint8 // task attribute, 3 bits
	LUN       [8]byte
	ITT       uint32
	// ExpectedDataTransferLength is the initiator's buffer size.
	ExpectedDataTransferLength uint32
	CmdSN                      uint32
	ExpStatSN                  uint32
	// CDB holds the first 16 bytes of the CDB; longer CDBs continue in an
	// extended-CDB AHS.
	CDB [16]byte
}

// Encode writes c into b.
func (c *SCSICommand) Encode(b *BHS) {
	b.start(OpSCSICommand, c.Immediate)
	b[1] = bit(c.Final, 0x80) | bit(c.Read, 0x40) | bit(c.Write, 0x20) | c.Attr&7
	copy(b[8:16], c.LUN[:])
	b.put32(16, c.ITT)
	b.put32(20, c.ExpectedDataTransferLength)
	b.put32(24, c.CmdSN)
	b.put32(28, c.ExpStatSN)
	copy(b[32:48], c.CDB[:])
}

// Decode reads c from b.
func (c *SCSICommand) Decode(b *BHS) error {
	if err := b.expect(OpSCSICommand); err != nil {
		return err
	}
	*c = SCSICommand{Immediate: b.Immediate(), Final: b.Final(), Read: b[1]&0x40 != 0,
		Write: b[1]&0x20 != 0, Attr: b[1] & 7, LUN: b.LUN(), ITT: b.ITT(),
		ExpectedDataTransferLength: b.u32(20), CmdSN: b.u32(24), ExpStatSN: b.u32(28),
		CDB: [16]byte(b[32:48])}
	return nil
}

// SCSI Response codes (11.4.3).
const (
	RespCommandCompleted uint8 = 0x00
	RespTargetFailure    uint8 = 0x01
)

// SCSIResponse is a SCSI Response (11.4).
type SCSIResponse struct {
	BidiOverflow  bool // o
	BidiUnderflow bool // u
	Overflow      bool // O
	Underflow     bool // U
	Response      uint8
	Status        uint8
	ITT           uint32
	SNACKTag      uint32
	StatSN        uint32
	ExpCmdSN      uint32
	MaxCmdSN      uint32
	ExpDataSN     uint32
	// BidiReadResidualCount and ResidualCount are valid with their flags.
	BidiReadResidualCount uint32
	ResidualCount         uint32
}

// Encode writes r into b.
func (r *SCSIResponse) Encode(b *BHS) {
	b.start(OpSCSIResponse, false)
	b[1] = 0x80 | bit(r.BidiOverflow, 0x10) | bit(r.BidiUnderflow, 0x08) |
		bit(r.Overflow, 0x04) | bit(r.Underflow, 0x02)
	b[2] = r.Response
	b[3] = r.Status
	b.put32(16, r.ITT)
	b.put32(20, r.SNACKTag)
	b.put32(24, r.StatSN)
	b.put32(28, r.ExpCmdSN)
	b.put32(32, r.MaxCmdSN)
	b.put32(36, r.ExpDataSN)
	b.put32(40, r.BidiReadResidualCount)
	b.put32(44, r.ResidualCount)
}

// Decode reads r from b.
func (r *SCSIResponse) Decode(b *BHS) error {
	if err := b.expect(OpSCSIResponse); err != nil {
		return err
	}
	*r = SCSIResponse{BidiOverflow: b[1]&0x10 != 0, BidiUnderflow: b[1]&0x08 != 0,
		Overflow: b[1]&0x04 != 0, Underflow: b[1]&0x02 != 0, Response: b[2], Status: b[3],
		ITT: b.ITT(), SNACKTag: b.u32(20), StatSN: b.u32(24), ExpCmdSN: b.u32(28),
		MaxCmdSN: b.u32(32), ExpDataSN: b.u32(36), BidiReadResidualCount: b.u32(40),
		ResidualCount: b.u32(44)}
	if r.Overflow && r.Underflow || r.BidiOverflow && r.BidiUnderflow {
		return fmt.Errorf("%w: both overflow and underflow set", ErrInvalidField)
	}
	return nil
}

// TaskMgmtRequest is a Task Management Function Request (11.5).
type TaskMgmtRequest struct {
	Immediate bool
	Function  uint8 // 7 bits
	LUN       [8]byte
	ITT       uint32
	RTT       uint32 // referenced task tag
	CmdSN     uint32
	ExpStatSN uint32
	RefCmdSN  uint32
	ExpDataSN uint32
}

// Encode writes r into b.
func (r *TaskMgmtRequest) Encode(b *BHS) {
	b.start(OpTaskMgmtReq, r.Immediate)
	b[1] = 0x80 | r.Function&0x7f
	copy(b[8:16], r.LUN[:])
	b.put32(16, r.ITT)
	b.put32(20, r.RTT)
	b.put32(24, r.CmdSN)
	b.put32(28, r.ExpStatSN)
	b.put32(32, r.RefCmdSN)
	b.put32(36, r.ExpDataSN)
}

// Decode reads r from b.
func (r *TaskMgmtRequest) Decode(b *BHS) error {
	if err := b.expect(OpTaskMgmtReq); err != nil {
		return err
	}
	*r = TaskMgmtRequest{Immediate: b.Immediate(), Function: b[1] & 0x7f, LUN: b.LUN(),
		ITT: b.ITT(), RTT: b.u32(20), CmdSN: b.u32(24), ExpStatSN: b.u32(28),
		RefCmdSN: b.u32(32), ExpDataSN: b.u32(36)}
	return nil
}

// Task management response codes (11.6.1).
const (
	TMFRespComplete            uint8 = 0
	TMFRespTaskNotFound        uint8 = 1
	TMFRespLUNNotFound         uint8 = 2
	TMFRespTaskAllegiant       uint8 = 3
	TMFRespReassignUnsupported uint8 = 4
	TMFRespNotSupported        uint8 = 5
	TMFRespAuthFailed          uint8 = 6
	TMFRespSucceeded           uint8 = 7 // RFC 7144, for QUERY functions
	TMFRespRejected            uint8 = 255
)

// TaskMgmtResponse is a Task Management Function Response (11.6).
type TaskMgmtResponse struct {
	Response uint8
	ITT      uint32
	StatSN   uint32
	ExpCmdSN uint32
	MaxCmdSN uint32
	// AdditionalInfo is RFC 7144's Additional Response Information (byte 36-38) for QUERY functions.
	AdditionalInfo [3]byte
}

// Encode writes r into b.
func (r *TaskMgmtResponse) Encode(b *BHS) {
	b.start(OpTaskMgmtResp, false)
	b[1] = 0x80
	b[2] = r.Response
	b.put32(16, r.ITT)
	b.put32(24, r.StatSN)
	b.put32(28, r.ExpCmdSN)
	b.put32(32, r.MaxCmdSN)
	copy(b[36:39], r.AdditionalInfo[:])
}

// Decode reads r from b.
func (r *TaskMgmtResponse) Decode(b *BHS) error {
	if err := b.expect(OpTaskMgmtResp); err != nil {
		return err
	}
	*r = TaskMgmtResponse{Response: b[2], ITT: b.ITT(), StatSN: b.u32(24),
		ExpCmdSN: b.u32(28), MaxCmdSN: b.u32(32), AdditionalInfo: [3]byte(b[36:39])}
	return nil
}

// Login stages (CSG/NSG, 11.12.3).
const (
	StageSecurity    uint8 = 0
	StageOperational uint8 = 1
	StageFullFeature uint8 = 3
)

// LoginRequest is a Login Request (11.12).
type LoginRequest struct {
	Transit    bool // T
	Continue   bool // C
	CSG, NSG   uint8
	VersionMax uint8
	VersionMin uint8
	ISID       [6]byte
	TSIH       uint16
	ITT        uint32
	CID        uint16
	CmdSN      uint32
	ExpStatSN  uint32
}

// Encode writes r into b. The I bit is always set (11.12).
func (r *LoginRequest) Encode(b *BHS) {
	b.start(OpLoginReq, true)
	b[1] = bit(r.Transit, 0x80) | bit(r.Continue, 0x40) | (r.CSG&3)<<2 | r.NSG&3
	b[2] = r.VersionMax
	b[3] = r.VersionMin
	copy(b[8:14], r.ISID[:])
	b.put16(14, r.TSIH)
	b.put32(16, r.ITT)
	b.put16(20, r.CID)
	b.put32(24, r.CmdSN)
	b.put32(28, r.ExpStatSN)
}

// Decode reads r from b. It reports ErrInvalidField when both T and C are
// set or a stage is 2 (reserved).
func (r *LoginRequest) Decode(b *BHS) error {
	if err := b.expect(OpLoginReq); err != nil {
		return err
	}
	*r = LoginRequest{Transit: b[1]&0x80 != 0, Continue: b[1]&0x40 != 0, CSG: b[1] >> 2 & 3,
		NSG: b[1] & 3, VersionMax: b[2], VersionMin: b[3], ISID: [6]byte(b[8:14]),
		TSIH: b.u16(14), ITT: b.ITT(), CID: b.u16(20), CmdSN: b.u32(24), ExpStatSN: b.u32(28)}
	if r.Transit && r.Continue {
		return fmt.Errorf("%w: login T and C both set", ErrInvalidField)
	}
	if r.CSG == 2 || r.Transit && r.NSG == 2 {
		return fmt.Errorf("%w: login stage 2 is reserved", ErrInvalidField)
	}
	return nil
}

// Login status classes and details (11.13.5).
const (
	LoginSuccess                uint16 = 0x0000
	LoginTargetMovedTemp        uint16 = 0x0101
	LoginTargetMovedPerm        uint16 = 0x0102
	LoginInitiatorError         uint16 = 0x0200
	LoginAuthFailure            uint16 = 0x0201
	LoginAuthorizationFailure   uint16 = 0x0202
	LoginTargetNotFound         uint16 = 0x0203
	LoginTargetRemoved          uint16 = 0x0204
	LoginUnsupportedVersion     uint16 = 0x0205
	LoginTooManyConnections     uint16 = 0x0206
	LoginMissingParameter       uint16 = 0x0207
	LoginCannotIncludeInSession uint16 = 0x0208
	LoginSessionTypeUnsupported uint16 = 0x0209
	LoginSessionDoesNotExist    uint16 = 0x020a
	LoginInvalidDuringLogin     uint16 = 0x020b
	LoginTargetError            uint16 = 0x0300
	LoginServiceUnavailable     uint16 = 0x0301
	LoginOutOfResources         uint16 = 0x0302
)

// LoginResponse is a Login Response (11.13).
type LoginResponse struct {
	Transit       bool
	Continue      bool
	CSG, NSG      uint8
	VersionMax    uint8
	VersionActive uint8
	ISID          [6]byte
	TSIH          uint16
	ITT           uint32
	StatSN        uint32
	ExpCmdSN      uint32
	MaxCmdSN      uint32
	// Status is StatusClass<<8 | StatusDetail.
	Status uint16
}

// Encode writes r into b.
func (r *LoginResponse) Encode(b *BHS) {
	b.start(OpLoginResp, false)
	b[1] = bit(r.Transit, 0x80) | bit(r.Continue, 0x40) | (r.CSG&3)<<2 | r.NSG&3
	b[2] = r.VersionMax
	b[3] = r.VersionActive
	copy(b[8:14], r.ISID[:])
	b.put16(14, r.TSIH)
	b.put32(16, r.ITT)
	b.put32(24, r.StatSN)
	b.put32(28, r.ExpCmdSN)
	b.put32(32, r.MaxCmdSN)
	b.put16(36, r.Status)
}

// Decode reads r from b.
func (r *LoginResponse) Decode(b *BHS) error {
	if err := b.expect(OpLoginResp); err != nil {
		return err
	}
	*r = LoginResponse{Transit: b[1]&0x80 != 0, Continue: b[1]&0x40 != 0, CSG: b[1] >> 2 & 3,
		NSG: b[1] & 3, VersionMax: b[2], VersionActive: b[3], ISID: [6]byte(b[8:14]),
		TSIH: b.u16(14), ITT: b.ITT(), StatSN: b.u32(24), ExpCmdSN: b.u32(28),
		MaxCmdSN: b.u32(32), Status: b.u16(36)}
	if r.Transit && r.Continue {
		return fmt.Errorf("%w: login T and C both set", ErrInvalidField)
	}
	return nil
}

// TextRequest is a Text Request (11.10).
type TextRequest struct {
	Immediate bool
	Final     bool
	Continue  bool
	LUN       [8]byte
	ITT       uint32
	TTT       uint32
	CmdSN     uint32
	ExpStatSN uint32
}

// Encode writes r into b.
func (r *TextRequest) Encode(b *BHS) {
	b.start(OpTextReq, r.Immediate)
	b[1] = bit(r.Final, 0x80) | bit(r.Continue, 0x40)
	copy(b[8:16], r.LUN[:])
	b.put32(16, r.ITT)
	b.put32(20, r.TTT)
	b.put32(24, r.CmdSN)
	b.put32(28, r.ExpStatSN)
}

// Decode reads r from b.
func (r *TextRequest) Decode(b *BHS) error {
	if err := b.expect(OpTextReq); err != nil {
		return err
	}
	*r = TextRequest{Immediate: b.Immediate(), Final: b.Final(), Continue: b[1]&0x40 != 0,
		LUN: b.LUN(), ITT: b.ITT(), TTT: b.u32(20), CmdSN: b.u32(24), ExpStatSN: b.u32(28)}
	if r.Final && r.Continue {
		return fmt.Errorf("%w: text F and C both set", ErrInvalidField)
	}
	return nil
}

// TextResponse is a Text Response (11.11).
type TextResponse struct {
	Final    bool
	Continue bool
	LUN      [8]byte
	ITT      uint32
	TTT      uint32
	StatSN   uint32
	ExpCmdSN uint32
	MaxCmdSN uint32
}

// Encode writes r into b.
func (r *TextResponse) Encode(b *BHS) {
	b.start(OpTextResp, false)
	b[1] = bit(r.Final, 0x80) | bit(r.Continue, 0x40)
	copy(b[8:16], r.LUN[:])
	b.put32(16, r.ITT)
	b.put32(20, r.TTT)
	b.put32(24, r.StatSN)
	b.put32(28, r.ExpCmdSN)
	b.put32(32, r.MaxCmdSN)
}

// Decode reads r from b.
func (r *TextResponse) Decode(b *BHS) error {
	if err := b.expect(OpTextResp); err != nil {
		return err
	}
	*r = TextResponse{Final: b.Final(), Continue: b[1]&0x40 != 0, LUN: b.LUN(), ITT: b.ITT(),
		TTT: b.u32(20), StatSN: b.u32(24), ExpCmdSN: b.u32(28), MaxCmdSN: b.u32(32)}
	if r.Final && r.Continue {
		return fmt.Errorf("%w: text F and C both set", ErrInvalidField)
	}
	return nil
}

// DataOut is a SCSI Data-Out (11.7).
type DataOut struct {
	Final        bool
	LUN          [8]byte
	ITT          uint32
	TTT          uint32
	ExpStatSN    uint32
	DataSN       uint32
	BufferOffset uint32
}

// Encode writes d into b.
func (d *DataOut) Encode(b *BHS) {
	b.start(OpDataOut, false)
	b[1] = bit(d.Final, 0x80)
	copy(b[8:16], d.LUN[:])
	b.put32(16, d.ITT)
	b.put32(20, d.TTT)
	b.put32(28, d.ExpStatSN)
	b.put32(36, d.DataSN)
	b.put32(40, d.BufferOffset)
}

// Decode reads d from b.
func (d *DataOut) Decode(b *BHS) error {
	if err := b.expect(OpDataOut); err != nil {
		return err
	}
	*d = DataOut{Final: b.Final(), LUN: b.LUN(), ITT: b.ITT(), TTT: b.u32(20),
		ExpStatSN: b.u32(28), DataSN: b.u32(36), BufferOffset: b.u32(40)}
	return nil
}

// DataIn is a SCSI Data-In (11.7).
type DataIn struct {
	Final     bool
	Ack       bool // A
	Overflow  bool // O, valid with S
	Underflow bool // U, valid with S
	// HasStatus is the S bit: Status and the residual are valid and this
	// PDU ends the command.
	HasStatus     bool
	Status        uint8
	LUN           [8]byte
	ITT           uint32
	TTT           uint32
	StatSN        uint32
	ExpCmdSN      uint32
	MaxCmdSN      uint32
	DataSN        uint32
	BufferOffset  uint32
	ResidualCount uint32
}

// Encode writes d into b.
func (d *DataIn) Encode(b *BHS) {
	b.start(OpDataIn, false)
	b[1] = bit(d.Final, 0x80) | bit(d.Ack, 0x40) | bit(d.Overflow, 0x04) |
		bit(d.Underflow, 0x02) | bit(d.HasStatus, 0x01)
	if d.HasStatus {
		b[3] = d.Status
	}
	copy(b[8:16], d.LUN[:])
	b.put32(16, d.ITT)
	b.put32(20, d.TTT)
	b.put32(24, d.StatSN)
	b.put32(28, d.ExpCmdSN)
	b.put32(32, d.MaxCmdSN)
	b.put32(36, d.DataSN)
	b.put32(40, d.BufferOffset)
	b.put32(44, d.ResidualCount)
}

// Decode reads d from b. The S bit without the F bit is invalid.
func (d *DataIn) Decode(b *BHS) error {
	if err := b.expect(OpDataIn); err != nil {
		return err
	}
	*d = DataIn{Final: b.Final(), Ack: b[1]&0x40 != 0, Overflow: b[1]&0x04 != 0,
		Underflow: b[1]&0x02 != 0, HasStatus: b[1]&0x01 != 0, Status: b[3], LUN: b.LUN(),
		ITT: b.ITT(), TTT: b.u32(20), StatSN: b.u32(24), ExpCmdSN: b.u32(28),
		MaxCmdSN: b.u32(32), DataSN: b.u32(36), BufferOffset: b.u32(40), ResidualCount: b.u32(44)}
	if d.HasStatus && !d.Final {
		return fmt.Errorf("%w: Data-In S bit without F bit", ErrInvalidField)
	}
	if d.Overflow && d.Underflow {
		return fmt.Errorf("%w: both overflow and underflow set", ErrInvalidField)
	}
	return nil
}

// Logout reason codes (11.14.1).
const (
	LogoutCloseSession    uint8 = 0
	LogoutCloseConnection uint8 = 1
	LogoutRemoveForRecov  uint8 = 2
)

// LogoutRequest is a Logout Request (11.14).
type LogoutRequest struct {
	Immediate  bool
	ReasonCode uint8 // 7 bits
	ITT        uint32
	CID        uint16
	CmdSN      uint32
	ExpStatSN  uint32
}

// Encode writes r into b.
func (r *LogoutRequest) Encode(b *BHS) {
	b.start(OpLogoutReq, r.Immediate)
	b[1] = 0x80 | r.ReasonCode&0x7f
	b.put32(16, r.ITT)
	b.put16(20, r.CID)
	b.put32(24, r.CmdSN)
	b.put32(28, r.ExpStatSN)
}

// Decode reads r from b.
func (r *LogoutRequest) Decode(b *BHS) error {
	if err := b.expect(OpLogoutReq); err != nil {
		return err
	}
	*r = LogoutRequest{Immediate: b.Immediate(), ReasonCode: b[1] & 0x7f, ITT: b.ITT(),
		CID: b.u16(20), CmdSN: b.u32(24), ExpStatSN: b.u32(28)}
	return nil
}

// Logout response codes (11.15.1).
const (
	LogoutRespSuccess        uint8 = 0
	LogoutRespCIDNotFound    uint8 = 1
	LogoutRespRecoveryUnsupp uint8 = 2
	LogoutRespCleanupFailed  uint8 = 3
)

// LogoutResponse is a Logout Response (11.15).
type LogoutResponse struct {
	Response    uint8
	ITT         uint32
	StatSN      uint32
	ExpCmdSN    uint32
	MaxCmdSN    uint32
	Time2Wait   uint16
	Time2Retain uint16
}

// Encode writes r into b.
func (r *LogoutResponse) Encode(b *BHS) {
	b.start(OpLogoutResp, false)
	b[1] = 0x80
	b[2] = r.Response
	b.put32(16, r.ITT)
	b.put32(24, r.StatSN)
	b.put32(28, r.ExpCmdSN)
	b.put32(32, r.MaxCmdSN)
	b.put16(40, r.Time2Wait)
	b.put16(42, r.Time2Retain)
}

// Decode reads r from b.
func (r *LogoutResponse) Decode(b *BHS) error {
	if err := b.expect(OpLogoutResp); err != nil {
		return err
	}
	*r = LogoutResponse{Response: b[2], ITT: b.ITT(), StatSN: b.u32(24), ExpCmdSN: b.u32(28),
		MaxCmdSN: b.u32(32), Time2Wait: b.u16(40), Time2Retain: b.u16(42)}
	return nil
}

// R2T is a Ready To Transfer (11.8).
type R2T struct {
	LUN                       [8]byte
	ITT                       uint32
	TTT                       uint32
	StatSN                    uint32
	ExpCmdSN                  uint32
	MaxCmdSN                  uint32
	R2TSN                     uint32
	BufferOffset              uint32
	DesiredDataTransferLength uint32
}

// Encode writes r into b.
func (r *R2T) Encode(b *BHS) {
	b.start(OpR2T, false)
	b[1] = 0x80
	copy(b[8:16], r.LUN[:])
	b.put32(16, r.ITT)
	b.put32(20, r.TTT)
	b.put32(24, r.StatSN)
	b.put32(28, r.ExpCmdSN)
	b.put32(32, r.MaxCmdSN)
	b.put32(36, r.R2TSN)
	b.put32(40, r.BufferOffset)
	b.put32(44, r.DesiredDataTransferLength)
}

// Decode reads r from b.
func (r *R2T) Decode(b *BHS) error {
	if err := b.expect(OpR2T); err != nil {
		return err
	}
	*r = R2T{LUN: b.LUN(), ITT: b.ITT(), TTT: b.u32(20), StatSN: b.u32(24),
		ExpCmdSN: b.u32(28), MaxCmdSN: b.u32(32), R2TSN: b.u32(36), BufferOffset: b.u32(40),
		DesiredDataTransferLength: b.u32(44)}
	if r.DesiredDataTransferLength == 0 {
		return fmt.Errorf("%w: R2T desired length 0", ErrInvalidField)
	}
	return nil
}

// Asynchronous events (11.9.1).
const (
	AsyncSCSIEvent      uint8 = 0
	AsyncLogoutRequest  uint8 = 1
	AsyncDropConnection uint8 = 2
	AsyncDropAllConns   uint8 = 3
	AsyncRenegotiate    uint8 = 4
	AsyncVendor         uint8 = 255
)

// AsyncMessage is an Asynchronous Message (11.9).
type AsyncMessage struct {
	LUN        [8]byte
	StatSN     uint32
	ExpCmdSN   uint32
	MaxCmdSN   uint32
	AsyncEvent uint8
	AsyncVCode uint8
	Parameter1 uint16
	Parameter2 uint16
	Parameter3 uint16
}

// Encode writes m into b. The ITT is always 0xffffffff.
func (m *AsyncMessage) Encode(b *BHS) {
	b.start(OpAsyncMessage, false)
	b[1] = 0x80
	copy(b[8:16], m.LUN[:])
	b.put32(16, ReservedTag)
	b.put32(24, m.StatSN)
	b.put32(28, m.ExpCmdSN)
	b.put32(32, m.MaxCmdSN)
	b[36] = m.AsyncEvent
	b[37] = m.AsyncVCode
	b.put16(38, m.Parameter1)
	b.put16(40, m.Parameter2)
	b.put16(42, m.Parameter3)
}

// Decode reads m from b.
func (m *AsyncMessage) Decode(b *BHS) error {
	if err := b.expect(OpAsyncMessage); err != nil {
		return err
	}
	*m = AsyncMessage{LUN: b.LUN(), StatSN: b.u32(24), ExpCmdSN: b.u32(28), MaxCmdSN: b.u32(32),
		AsyncEvent: b[36], AsyncVCode: b[37], Parameter1: b.u16(38), Parameter2: b.u16(40),
		Parameter3: b.u16(42)}
	return nil
}

// Reject reasons (11.17.1).
const (
	RejectDataDigest       uint8 = 0x02
	RejectSNACK            uint8 = 0x03
	RejectProtocolError    uint8 = 0x04
	RejectNotSupported     uint8 = 0x05
	RejectImmediateCommand uint8 = 0x06
	RejectTaskInProgress   uint8 = 0x07
	RejectInvalidDataAck   uint8 = 0x08
	RejectInvalidPDUField  uint8 = 0x09
	RejectOutOfResources   uint8 = 0x0a
	RejectWaitingForLogout uint8 = 0x0c
)

// Reject is a Reject (11.17). Its data segment is the rejected PDU's header.
type Reject struct {
	Reason   uint8
	StatSN   uint32
	ExpCmdSN uint32
	MaxCmdSN uint32
	DataSN   uint32 // DataSN/R2TSN for SNACK rejects
}

// Encode writes r into b. The ITT is always 0xffffffff.
func (r *Reject) Encode(b *BHS) {
	b.start(OpReject, false)
	b[1] = 0x80
	b[2] = r.Reason
	b.put32(16, ReservedTag)
	b.put32(24, r.StatSN)
	b.put32(28, r.ExpCmdSN)
	b.put32(32, r.MaxCmdSN)
	b.put32(36, r.DataSN)
}

// Decode reads r from b.
func (r *Reject) Decode(b *BHS) error {
	if err := b.expect(OpReject); err != nil {
		return err
	}
	*r = Reject{Reason: b[2], StatSN: b.u32(24), ExpCmdSN: b.u32(28), MaxCmdSN: b.u32(32),
		DataSN: b.u32(36)}
	return nil
}

// SNACK types (11.16.1).
const (
	SNACKDataR2T    uint8 = 0
	SNACKStatus     uint8 = 1
	SNACKDataACK    uint8 = 2
	SNACKRDataSNACK uint8 = 3
)

// SNACK is a SNACK Request (11.16).
type SNACK struct {
	Type      uint8 // 4 bits
	LUN       [8]byte
	ITT       uint32
	TTT       uint32
	ExpStatSN uint32
	BegRun    uint32
	RunLength uint32
}

// Encode writes s into b.
func (s *SNACK) Encode(b *BHS) {
	b.start(OpSNACK, false)
	b[1] = 0x80 | s.Type&0x0f
	copy(b[8:16], s.LUN[:])
	b.put32(16, s.ITT)
	b.put32(20, s.TTT)
	b.put32(28, s.ExpStatSN)
	b.put32(40, s.BegRun)
	b.put32(44, s.RunLength)
}

// Decode reads s from b.
func (s *SNACK) Decode(b *BHS) error {
	if err := b.expect(OpSNACK); err != nil {
		return err
	}
	*s = SNACK{Type: b[1] & 0x0f, LUN: b.LUN(), ITT: b.ITT(), TTT: b.u32(20),
		ExpStatSN: b.u32(28), BegRun: b.u32(40), RunLength: b.u32(44)}
	return nil
}
