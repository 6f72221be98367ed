package scsi

import (
	"context"
	"sync"
	"time"

	"github.com/lunway/lunway/blockdev"
)

// defaultTable returns the shared, immutable command table.
var defaultTable = sync.OnceValue(func() *commandTable { return newCommandTable(allEntries()) })

func allEntries() []opInfo {
	e := commandEntries()
	e = append(e, reservationEntries()...)
	e = append(e, vaaiEntries()...)
	e = append(e, aluaEntries()...)
	return e
}

// request is one command on its way through the device server.
type request struct {
	ctx  context.Context
	t    *Target
	lu   *LU
	cmd  *Command
	cdb  []byte
	op   *opInfo
	ns   *nexusState
	info blockdev.Info
	desc bool // report descriptor-format sense (D_SENSE)
	// xfer is the transfer length the CDB calls for, in bytes, once known;
	// failures carry it so the transport can report residuals.
	xfer uint32

	// A task started by ExecuteAsync: the request lives until the
	// Device's completion.
	task   *Task
	done   Completer
	start  time.Time
	read   bool
	buf    []byte // a read's data
	bufRel func() // gives buf back to the pool
	lockID uint64 // a write's range lock, 0 for none
}

// fail ends the command with CHECK CONDITION and s.
func (r *request) fail(s senseData) Result {
	return Result{Status: StatusCheckCondition, Sense: s.encode(r.desc), TransferLen: r.xfer}
}

// failErr ends the command with the status and sense errorSense gives err.
func (r *request) failErr(err error) Result {
	st, s := errorSense(err)
	if st != StatusCheckCondition {
		return Result{Status: st, TransferLen: r.xfer}
	}
	return r.fail(s)
}

// dataIn returns data truncated to the allocation length.
func dataIn(data []byte, alloc uint32) Result {
	if uint32(len(data)) > alloc {
		data = data[:alloc]
	}
	return Result{Data: data, TransferLen: uint32(len(data))}
}

// dispatch runs the generic checks of SAM-5 5.14 / SPC-4 in order, then
// the command's handler:
//
//  1. LU existence (INQUIRY, REPORT LUNS and REQUEST SENSE work without one);
//  2. a pending unit attention, except for the commands that neither
//     report nor clear one;
//  3. opcode and service action;
//  4. CDB length and reserved bits (including NACA/LINK in CONTROL);
//  5. ALUA access state of the target port;
//  6. reservation conflicts (SCSI-2 and persistent).
func (t *Target) dispatch(ctx context.Context, lu *LU, cmd *Command) Result {
	cdb := cmd.CDB
	if len(cdb) == 0 {
		return Result{Status: StatusCheckCondition, Sense: illegal(ascInvalidOpcode).encode(false)}
	}
	op, saUnknown := t.table.lookup(cdb)
	if lu == nil {
		return t.noLU(cmd, op)
	}
	r := t.newRequest(ctx, lu, cmd, op)
	defer t.freeRequest(r)
	if res, ok := r.admit(saUnknown); !ok {
		return res
	}
	return r.op.handle(r)
}

// newRequest takes a request from the target's pool.
func (t *Target) newRequest(ctx context.Context, lu *LU, cmd *Command, op *opInfo) *request {
	r, _ := t.reqs.Get().(*request)
	if r == nil {
		r = new(request)
	}
	*r = request{ctx: ctx, t: t, lu: lu, cmd: cmd, cdb: cmd.CDB, op: op, desc: lu.mode.dsense.Load()}
	return r
}

func (t *Target) freeRequest(r *request) {
	*r = request{}
	t.reqs.Put(r)
}

// admit runs the checks of dispatch from the unit attention on. When it
// returns false the command ends with res.
func (r *request) admit(saUnknown bool) (res Result, ok bool) {
	lu, op := r.lu, r.op
	r.ns = lu.nexusState(r.cmd.Nexus)
	if op == nil || !op.noUA {
		if code, ok := r.ns.takeUA(); ok {
			return r.fail(senseData{key: senseUnitAttention, asc: code}), false
		}
	}
	if op != nil && op.supported != nil && !op.supported(lu) {
		if op.hasSA {
			saUnknown = true
		}
		op, r.op = nil, nil
	}
	if op == nil {
		if saUnknown {
			return r.fail(invalidCDB(1, 4)), false
		}
		return r.fail(illegal(ascInvalidOpcode)), false
	}
	if len(r.cdb) < op.cdbLen() {
		return r.fail(invalidCDB(len(r.cdb)-1, -1)), false
	}
	r.cdb = r.cdb[:op.cdbLen()]
	if s, ok := op.checkReserved(r.cdb); !ok {
		return r.fail(s), false
	}
	if a := r.t.alua; a != nil {
		if s, ok := a.allows(r.cmd.Nexus, op.alua); !ok {
			return r.fail(s), false
		}
	}
	if lu.pr.conflicts(r) {
		return Result{Status: StatusReservationConflict}, false
	}
	r.info = lu.dev.Info()
	if size := r.info.SizeBytes; size != lu.sizeSeen.Load() {
		// Resized underneath without CapacityChanged: tell every nexus
		// (this command already sees the new size).
		if lu.sizeSeen.Swap(size) != size {
			lu.broadcastUA(r.ns, ascCapacityChanged)
		}
	}
	return Result{}, true
}

// noLU answers a command addressed to a LUN without a logical unit
// (SPC-4 4.6.4 / SAM-5 5.9.6): INQUIRY reports peripheral qualifier 011b,
// REPORT LUNS works, REQUEST SENSE returns LOGICAL UNIT NOT SUPPORTED as
// data, everything else is CHECK CONDITION 05/25/00.
func (t *Target) noLU(cmd *Command, op *opInfo) Result {
	r := &request{t: t, cmd: cmd, cdb: cmd.CDB, op: op}
	if op == nil || len(cmd.CDB) < op.cdbLen() {
		return r.fail(illegal(ascLUNotSupported))
	}
	r.cdb = cmd.CDB[:op.cdbLen()]
	switch op.op {
	case 0x12: // INQUIRY
		if s, ok := op.checkReserved(r.cdb); !ok {
			return r.fail(s)
		}
		data := make([]byte, 36)
		data[0] = 0x7f
		data[2] = 0x06
		data[3] = 0x12
		data[4] = 31
		return dataIn(data, uint32(be16(r.cdb[3:5])))
	case 0xa0:
		return r.reportLUNs()
	case 0x03:
		s := illegal(ascLUNotSupported)
		var b []byte
		if r.cdb[1]&1 != 0 {
			b = s.appendDescriptor(nil)
		} else {
			b = s.appendFixed(nil)
		}
		return dataIn(b, uint32(r.cdb[4]))
	}
	return r.fail(illegal(ascLUNotSupported))
}
