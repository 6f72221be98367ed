package pdu

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// message is implemented by every opcode type.
type message interface {
	Encode(*BHS)
	Decode(*BHS) error
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// bhsGolden holds hand-assembled headers following the field diagrams of
// RFC 7143 section 11. Each hex string is written field by field.
var bhsGolden = []struct {
	name string
	msg  message
	new  func() message
	hex  string
}{
	{
		name: "NOP-Out ping",
		msg:  &NOPOut{Immediate: true, LUN: [8]byte{0, 1}, ITT: 0x10, TTT: ReservedTag, CmdSN: 7, ExpStatSN: 3},
		new:  func() message { return &NOPOut{} },
		hex: `40 80 0000 00 000000 0001000000000000 00000010 ffffffff 00000007 00000003
		      00000000 00000000 00000000 00000000`,
	},
	{
		name: "NOP-In keepalive",
		msg:  &NOPIn{ITT: ReservedTag, TTT: 0x55, StatSN: 9, ExpCmdSN: 10, MaxCmdSN: 137},
		new:  func() message { return &NOPIn{} },
		hex: `20 80 0000 00 000000 0000000000000000 ffffffff 00000055 00000009 0000000a
		      00000089 00000000 00000000 00000000`,
	},
	{
		name: "SCSI Command READ(10)",
		msg: &SCSICommand{Final: true, Read: true, Attr: 1, ITT: 0x11223344, ExpectedDataTransferLength: 0x1000,
			CmdSN: 5, ExpStatSN: 6, CDB: [16]byte{0x28, 0, 0, 0, 0, 0x10, 0, 0, 8, 0}},
		new: func() message { return &SCSICommand{} },
		hex: `01 c1 0000 00 000000 0000000000000000 11223344 00001000 00000005 00000006
		      28000000 00100000 08000000 00000000`,
	},
	{
		name: "SCSI Command WRITE(16) immediate",
		msg: &SCSICommand{Immediate: true, Final: true, Write: true, Attr: 2, LUN: [8]byte{0, 3},
			ITT: 1, ExpectedDataTransferLength: 512, CmdSN: 0xfffffffe, ExpStatSN: 1,
			CDB: [16]byte{0x8a, 0x08, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 1}},
		new: func() message { return &SCSICommand{} },
		hex: `41 a2 0000 00 000000 0003000000000000 00000001 00000200 fffffffe 00000001
		      8a080000 00000000 00200000 00010000`,
	},
	{
		name: "SCSI Response underflow",
		msg: &SCSIResponse{Underflow: true, Status: 0, ITT: 0x11223344, StatSN: 2, ExpCmdSN: 6,
			MaxCmdSN: 133, ResidualCount: 0x200},
		new: func() message { return &SCSIResponse{} },
		hex: `21 82 00 00 00 000000 0000000000000000 11223344 00000000 00000002 00000006
		      00000085 00000000 00000000 00000200`,
	},
	{
		name: "SCSI Response check condition overflow",
		msg:  &SCSIResponse{Overflow: true, Status: 2, ITT: 9, StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 3, ResidualCount: 4},
		new:  func() message { return &SCSIResponse{} },
		hex: `21 84 00 02 00 000000 0000000000000000 00000009 00000000 00000001 00000002
		      00000003 00000000 00000000 00000004`,
	},
	{
		name: "TMF ABORT TASK",
		msg: &TaskMgmtRequest{Immediate: true, Function: 1, LUN: [8]byte{0, 1}, ITT: 0x20, RTT: 0x10,
			CmdSN: 8, ExpStatSN: 4, RefCmdSN: 7},
		new: func() message { return &TaskMgmtRequest{} },
		hex: `42 81 0000 00 000000 0001000000000000 00000020 00000010 00000008 00000004
		      00000007 00000000 00000000 00000000`,
	},
	{
		name: "TMF response task not found",
		msg:  &TaskMgmtResponse{Response: TMFRespTaskNotFound, ITT: 0x20, StatSN: 4, ExpCmdSN: 9, MaxCmdSN: 136},
		new:  func() message { return &TaskMgmtResponse{} },
		hex: `22 80 01 00 00 000000 0000000000000000 00000020 00000000 00000004 00000009
		      00000088 00000000 00000000 00000000`,
	},
	{
		name: "Login request security to operational",
		msg: &LoginRequest{Transit: true, CSG: StageSecurity, NSG: StageOperational,
			ISID: [6]byte{0x40, 0x00, 0x01, 0x37, 0x00, 0x00}, ITT: 0, CID: 1, CmdSN: 1},
		new: func() message { return &LoginRequest{} },
		hex: `43 81 00 00 00 000000 400001370000 0000 00000000 0001 0000 00000001 00000000
		      00000000 00000000 00000000 00000000`,
	},
	{
		name: "Login response operational to full feature",
		msg: &LoginResponse{Transit: true, CSG: StageOperational, NSG: StageFullFeature,
			ISID: [6]byte{0x40, 0x00, 0x01, 0x37, 0x00, 0x00}, TSIH: 0x0102, StatSN: 1, ExpCmdSN: 1, MaxCmdSN: 128},
		new: func() message { return &LoginResponse{} },
		hex: `23 87 00 00 00 000000 400001370000 0102 00000000 00000000 00000001 00000001
		      00000080 0000 0000 00000000 00000000`,
	},
	{
		name: "Login response target not found",
		msg:  &LoginResponse{Status: LoginTargetNotFound, StatSN: 0, ExpCmdSN: 1, MaxCmdSN: 1},
		new:  func() message { return &LoginResponse{} },
		hex: `23 00 00 00 00 000000 000000000000 0000 00000000 00000000 00000000 00000001
		      00000001 0203 0000 00000000 00000000`,
	},
	{
		name: "Text request SendTargets",
		msg:  &TextRequest{Immediate: true, Final: true, ITT: 3, TTT: ReservedTag, CmdSN: 2, ExpStatSN: 2},
		new:  func() message { return &TextRequest{} },
		hex: `44 80 0000 00 000000 0000000000000000 00000003 ffffffff 00000002 00000002
		      00000000 00000000 00000000 00000000`,
	},
	{
		name: "Text response continued",
		msg:  &TextResponse{Continue: true, ITT: 3, TTT: 0x77, StatSN: 2, ExpCmdSN: 2, MaxCmdSN: 129},
		new:  func() message { return &TextResponse{} },
		hex: `24 40 0000 00 000000 0000000000000000 00000003 00000077 00000002 00000002
		      00000081 00000000 00000000 00000000`,
	},
	{
		name: "Data-Out",
		msg:  &DataOut{Final: true, LUN: [8]byte{0, 1}, ITT: 0x11, TTT: 0x22, ExpStatSN: 5, DataSN: 2, BufferOffset: 0x20000},
		new:  func() message { return &DataOut{} },
		hex: `05 80 0000 00 000000 0001000000000000 00000011 00000022 00000000 00000005
		      00000000 00000002 00020000 00000000`,
	},
	{
		name: "Data-In with status",
		msg: &DataIn{Final: true, HasStatus: true, Underflow: true, Status: 0, ITT: 0x11, TTT: ReservedTag,
			StatSN: 5, ExpCmdSN: 6, MaxCmdSN: 133, DataSN: 3, BufferOffset: 0x3000, ResidualCount: 0x200},
		new: func() message { return &DataIn{} },
		hex: `25 83 00 00 00 000000 0000000000000000 00000011 ffffffff 00000005 00000006
		      00000085 00000003 00003000 00000200`,
	},
	{
		name: "Logout request close session",
		msg:  &LogoutRequest{Immediate: true, ReasonCode: LogoutCloseSession, ITT: 0x30, CID: 1, CmdSN: 12, ExpStatSN: 11},
		new:  func() message { return &LogoutRequest{} },
		hex: `46 80 0000 00 000000 0000000000000000 00000030 0001 0000 0000000c 0000000b
		      00000000 00000000 00000000 00000000`,
	},
	{
		name: "Logout response",
		msg:  &LogoutResponse{Response: LogoutRespSuccess, ITT: 0x30, StatSN: 11, ExpCmdSN: 12, MaxCmdSN: 139, Time2Wait: 2, Time2Retain: 0},
		new:  func() message { return &LogoutResponse{} },
		hex: `26 80 00 00 00 000000 0000000000000000 00000030 00000000 0000000b 0000000c
		      0000008b 00000000 0002 0000 00000000`,
	},
	{
		name: "R2T",
		msg: &R2T{LUN: [8]byte{0, 1}, ITT: 0x11, TTT: 0x1234, StatSN: 5, ExpCmdSN: 6, MaxCmdSN: 133,
			R2TSN: 1, BufferOffset: 0x10000, DesiredDataTransferLength: 0x40000},
		new: func() message { return &R2T{} },
		hex: `31 80 0000 00 000000 0001000000000000 00000011 00001234 00000005 00000006
		      00000085 00000001 00010000 00040000`,
	},
	{
		name: "Async logout request",
		msg:  &AsyncMessage{StatSN: 5, ExpCmdSN: 6, MaxCmdSN: 7, AsyncEvent: AsyncLogoutRequest, Parameter3: 10},
		new:  func() message { return &AsyncMessage{} },
		hex: `32 80 0000 00 000000 0000000000000000 ffffffff 00000000 00000005 00000006
		      00000007 01 00 0000 0000 000a 00000000`,
	},
	{
		name: "Reject protocol error",
		msg:  &Reject{Reason: RejectProtocolError, StatSN: 4, ExpCmdSN: 5, MaxCmdSN: 6},
		new:  func() message { return &Reject{} },
		hex: `3f 80 04 00 00 000000 0000000000000000 ffffffff 00000000 00000004 00000005
		      00000006 00000000 00000000 00000000`,
	},
	{
		name: "SNACK status",
		msg:  &SNACK{Type: SNACKStatus, ITT: 0x11, TTT: ReservedTag, ExpStatSN: 3, BegRun: 2, RunLength: 1},
		new:  func() message { return &SNACK{} },
		hex: `10 81 0000 00 000000 0000000000000000 00000011 ffffffff 00000000 00000003
		      00000000 00000000 00000002 00000001`,
	},
}

func TestBHSGolden(t *testing.T) {
	for _, tc := range bhsGolden {
		t.Run(tc.name, func(t *testing.T) {
			want := mustHex(t, tc.hex)
			if len(want) != BHSLen {
				t.Fatalf("golden is %d bytes", len(want))
			}
			var b BHS
			tc.msg.Encode(&b)
			if got := b[:]; string(got) != string(want) {
				t.Fatalf("encode:\n got %x\nwant %x", got, want)
			}
			got := tc.new()
			if err := got.Decode((*BHS)(want)); err != nil {
				t.Fatalf("decode: %v", err)
			}
			var b2 BHS
			got.Encode(&b2)
			if b2 != b {
				t.Fatalf("round trip:\n got %x\nwant %x", b2[:], b[:])
			}
		})
	}
}

func TestBHSCommonFields(t *testing.T) {
	b := BHS(mustHex(t, `41 a2 0000 02 000201 0003000000000000 00000001 00000200 fffffffe 00000001
		8a080000 00000000 00200000 00010000`))
	if b.Opcode() != OpSCSICommand || !b.Immediate() || !b.Final() {
		t.Fatalf("opcode/I/F: %v %v %v", b.Opcode(), b.Immediate(), b.Final())
	}
	if b.TotalAHSLength() != 8 || b.DataSegmentLength() != 513 {
		t.Fatalf("lengths: ahs %d data %d", b.TotalAHSLength(), b.DataSegmentLength())
	}
	if b.ITT() != 1 || b.LUN() != [8]byte{0, 3} {
		t.Fatalf("ITT/LUN: %x %x", b.ITT(), b.LUN())
	}
	b.SetLengths(0, MaxDataSegmentLength+10)
	if b.DataSegmentLength() != MaxDataSegmentLength || b.TotalAHSLength() != 0 {
		t.Fatalf("SetLengths clamp: %d", b.DataSegmentLength())
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		msg  message
		hex  string
		want error
	}{
		{"wrong opcode", &SCSICommand{}, "20" + strings.Repeat("00", 47), ErrBadOpcode},
		{"login T and C", &LoginRequest{}, "43c1" + strings.Repeat("00", 46), ErrInvalidField},
		{"login reserved stage", &LoginRequest{}, "4388" + strings.Repeat("00", 46), ErrInvalidField},
		{"text F and C", &TextRequest{}, "04c0" + strings.Repeat("00", 46), ErrInvalidField},
		{"data-in S without F", &DataIn{}, "2501" + strings.Repeat("00", 46), ErrInvalidField},
		{"response O and U", &SCSIResponse{}, "2186" + strings.Repeat("00", 46), ErrInvalidField},
		{"R2T zero length", &R2T{}, "3180" + strings.Repeat("00", 46), ErrInvalidField},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.msg.Decode((*BHS)(mustHex(t, tc.hex)))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestOpcodeString(t *testing.T) {
	if OpR2T.String() != "R2T" || Opcode(0x1c).String() != "opcode(0x1c)" {
		t.Fatal(OpR2T.String(), Opcode(0x1c).String())
	}
	if Opcode(0x1c).Known() || !OpSNACK.Known() || !OpSNACK.FromInitiator() || OpNOPIn.FromInitiator() {
		t.Fatal("Known/FromInitiator")
	}
}
