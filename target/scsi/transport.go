package scsi

// This file is the contract between a SCSI transport (target/iscsi) and the
// SCSI device server (this package). The transport decodes PDUs, gathers
// data-out buffers and sends data-in, status and sense; this package
// interprets CDBs against logical units. The transport never parses a CDB.
//
// A command's life, as the transport drives it:
//
//	task := target.Begin(ctx, cmd)   // in command order (iSCSI CmdSN order)
//	... gather cmd.DataOut, watching task.Context() for an abort ...
//	res := task.Execute()            // may run in parallel with other tasks
//	task.End()                       // before the response is queued, so that
//	                                 // no abort can answer "function complete"
//	                                 // after the command's status went out
//	... send res (unless res.Aborted), then res.Release()
//
// Task management reaches every task of the target through ManageTask, in
// whatever phase the task is (waiting for data or executing).

import (
	"fmt"
)

// Status is a SAM status code.
type Status uint8

// SAM-5 status codes.
const (
	StatusGood                Status = 0x00
	StatusCheckCondition      Status = 0x02
	StatusConditionMet        Status = 0x04
	StatusBusy                Status = 0x08
	StatusReservationConflict Status = 0x18
	StatusTaskSetFull         Status = 0x28
	StatusACAActive           Status = 0x30
	StatusTaskAborted         Status = 0x40
)

// TaskAttr is a SAM task attribute; the values are iSCSI's ATTR field.
type TaskAttr uint8

// Task attributes.
const (
	AttrUntagged    TaskAttr = 0
	AttrSimple      TaskAttr = 1
	AttrOrdered     TaskAttr = 2
	AttrHeadOfQueue TaskAttr = 3
	AttrACA         TaskAttr = 4
)

// TargetPort identifies the SCSI target port a nexus runs through. For iSCSI
// a target port is a (target name, target portal group tag) pair.
type TargetPort struct {
	// Name is the SCSI target port name, "<target iqn>,t,0x<TPGT, 4 hex digits>".
	Name string
	// RelativeID is the relative target port identifier (1..65535), unique
	// within the target (VPD 0x83, REPORT TARGET PORT GROUPS).
	RelativeID uint16
	// GroupID is the ALUA target port group the port belongs to.
	GroupID uint16
}

// Nexus is an I_T nexus: one initiator port logged in through one target
// port. For iSCSI it is one session. The transport creates it at login and
// calls Target.NexusLost when the session ends. Its fields do not change.
type Nexus struct {
	// ID is unique among the nexuses of the process, never reused.
	ID uint64
	// InitiatorName is the iSCSI initiator name (iqn. or eui. or naa.).
	InitiatorName string
	// ISID is the initiator session identifier; with InitiatorName it names
	// the initiator port.
	ISID [6]byte
	// Port is the target port the session runs through.
	Port TargetPort
	// RemoteAddr is the initiator's network address, for logs.
	RemoteAddr string
}

// InitiatorPortName is the SCSI initiator port name, "<iqn>,i,0x<ISID hex>".
func (n *Nexus) InitiatorPortName() string {
	return fmt.Sprintf("%s,i,0x%x", n.InitiatorName, n.ISID[:])
}

// Command is one SCSI command as the transport received it.
type Command struct {
	// Nexus the command arrived on.
	Nexus *Nexus
	// LUN is the logical unit number decoded from the SAM 8-byte LUN field
	// (see DecodeLUN).
	LUN uint64
	// CDB is the whole command descriptor block (the transport joins the
	// BHS CDB and an extended-CDB AHS). Its length is at least 6.
	CDB []byte
	// Tag is the initiator task tag, unique among the nexus' open tasks.
	Tag uint32
	// Attr is the task attribute.
	Attr TaskAttr
	// Read and Write are the data directions the initiator declared.
	Read, Write bool
	// ExpectedLen is the initiator's expected data transfer length: the
	// size of its data-in or data-out buffer.
	ExpectedLen uint32
	// DataOut is the data-out buffer of a write command, complete before
	// Execute: ExpectedLen bytes. It is nil for commands without data-out.
	// The device server does not retain it after Execute returns.
	DataOut []byte
}

// Result is the outcome of a command.
type Result struct {
	Status Status
	// Sense is the sense data for CHECK CONDITION: fixed format (SPC-4
	// 4.5.3), or descriptor format (4.5.2) while the LU's control mode
	// page has D_SENSE=1. The transport sends it as it is.
	Sense []byte
	// Data is the data-in buffer. The transport sends at most ExpectedLen
	// bytes of it.
	Data []byte
	// TransferLen is the length of the transfer the command called for in
	// its data direction: len(Data) for data-in commands, and the bytes the
	// CDB asked for for data-out commands. The transport reports an
	// underflow residual when ExpectedLen is larger and an overflow
	// residual when it is smaller.
	TransferLen uint32
	// Aborted reports that task management or nexus loss aborted the task:
	// the transport sends no response for it.
	Aborted bool

	release func()
}

// Release returns Data's buffer to its pool. Call it once the data has been
// sent; Data must not be used afterwards. It is safe on a zero Result.
func (r *Result) Release() {
	if r.release != nil {
		r.release()
		r.release = nil
	}
	r.Data = nil
}

// TMFunction is a task management function; the values are iSCSI's
// (RFC 7143 11.5.1 and RFC 7144).
type TMFunction uint8

// Task management functions.
const (
	TMFAbortTask        TMFunction = 1
	TMFAbortTaskSet     TMFunction = 2
	TMFClearACA         TMFunction = 3
	TMFClearTaskSet     TMFunction = 4
	TMFLogicalUnitReset TMFunction = 5
	TMFTargetWarmReset  TMFunction = 6
	TMFTargetColdReset  TMFunction = 7
	TMFTaskReassign     TMFunction = 8
	TMFQueryTask        TMFunction = 9
	TMFQueryTaskSet     TMFunction = 10
	TMFITNexusReset     TMFunction = 11
	TMFQueryAsyncEvent  TMFunction = 12
)

// TMFRequest is a task management request.
type TMFRequest struct {
	Function TMFunction
	Nexus    *Nexus
	LUN      uint64
	// RefTag is the task tag an ABORT TASK or QUERY TASK refers to.
	RefTag uint32
}

// TMFResponse is a task management service response (SAM-5 7.10). The
// transport maps it to its own codes.
type TMFResponse uint8

// Task management responses.
const (
	// TMFFunctionComplete: the function was performed (for ABORT TASK also
	// when the task had already completed).
	TMFFunctionComplete TMFResponse = iota
	// TMFFunctionSucceeded: a QUERY found what it asked about.
	TMFFunctionSucceeded
	// TMFTaskNotFound: the referenced task does not exist.
	TMFTaskNotFound
	// TMFIncorrectLUN: the LUN does not exist.
	TMFIncorrectLUN
	// TMFNotSupported: the function is not supported.
	TMFNotSupported
	// TMFRejected: the function was refused.
	TMFRejected
)

// DecodeLUN decodes a SAM-5 8-byte LUN field (peripheral or flat space
// addressing of the first level) into a LUN number. Other addressing
// methods decode to a number no logical unit has (1<<63 | raw first level).
func DecodeLUN(b [8]byte) uint64 {
	switch b[0] >> 6 {
	case 0: // peripheral device addressing, bus 0
		if b[0]&0x3f == 0 {
			return uint64(b[1])
		}
	case 1: // flat space addressing
		return uint64(b[0]&0x3f)<<8 | uint64(b[1])
	}
	return 1<<63 | uint64(b[0])<<8 | uint64(b[1])
}

// EncodeLUN encodes a LUN number (0..16383) as a SAM-5 8-byte LUN field,
// with peripheral addressing below 256 and flat space addressing above,
// as REPORT LUNS returns it.
func EncodeLUN(lun uint64) [8]byte {
	var b [8]byte
	if lun < 256 {
		b[1] = byte(lun)
	} else {
		b[0] = 0x40 | byte(lun>>8&0x3f)
		b[1] = byte(lun)
	}
	return b
}

// MaxLUN is the highest LUN number EncodeLUN can express.
const MaxLUN = 16383
