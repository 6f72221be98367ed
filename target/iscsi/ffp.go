package iscsi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lunway/lunway/target/pdu"
	"github.com/lunway/lunway/target/scsi"
)

// serial number comparisons (RFC 1982, 32 bits).
func snLT(a, b uint32) bool { return int32(a-b) < 0 }
func snLE(a, b uint32) bool { return int32(a-b) <= 0 }

// cmdTask is one SCSI command from its SCSI Command PDU to its response.
type cmdTask struct {
	c         *conn
	itt       uint32
	lun       [8]byte
	immediate bool
	cdb       [16]byte
	final     bool // F bit of the command PDU
	tooBig    bool // expected length beyond Options.MaxTransferLength
	cmd       scsi.Command
	task      *scsi.Task
	edtl      uint32

	// Write data gathering, guarded by c.tmu while the task is in c.tmu.tasks.
	buf       []byte
	got       uint32 // bytes received
	unsolEnd  uint32 // end of the unsolicited range
	unsolNext uint32 // next unsolicited offset expected
	unsolSN   uint32 // next unsolicited DataSN
	unsolDone bool
	r2tNext   uint32 // next offset to solicit
	r2tSN     uint32
	r2ts      []r2tState
	busy      bool // the reader is filling buf outside the lock
	aborted   bool
	stopWatch func() bool
}

// r2tState is one outstanding R2T.
type r2tState struct {
	ttt, next, end, dataSN uint32
}

// readLoop reads and dispatches PDUs until the connection ends. It
// returns errLogout after a logout, or the error that ended the connection.
func (c *conn) readLoop() error {
	var h pdu.BHS
	for {
		ahs, err := c.rd.ReadHeader(&h)
		if err != nil {
			if errors.Is(err, pdu.ErrTooLarge) && c.rd.Pending() > 0 {
				// Framing is intact: skip the data and reject the PDU.
				n := c.rd.Pending()
				if err := c.rd.Discard(); err != nil && !errors.Is(err, pdu.ErrDataDigest) {
					return err
				}
				c.log.Debug("data segment beyond MaxRecvDataSegmentLength", "opcode", h.Opcode(), "len", n)
				c.reject(pdu.RejectProtocolError, &h)
				c.skipCmdSN(&h)
				continue
			}
			if c.draining.Load() && c.ctx.Err() == nil {
				return nil
			}
			return err
		}
		c.stats.pdusIn.Add(1)
		c.stats.bytesIn.Add(uint64(pdu.BHSLen + len(ahs) + h.DataSegmentLength()))
		c.lastRecv.Store(time.Now().UnixNano())
		if err := c.dispatch(&h, ahs); err != nil {
			return err
		}
	}
}

// dispatch handles one PDU whose header was read.
func (c *conn) dispatch(h *pdu.BHS, ahs []byte) error {
	op := h.Opcode()
	if c.sess.discovery {
		switch op {
		case pdu.OpTextReq, pdu.OpLogoutReq, pdu.OpNOPOut:
		default:
			c.rd.Discard()
			c.reject(pdu.RejectProtocolError, h)
			return nil
		}
	}
	switch op {
	case pdu.OpSCSICommand:
		return c.scsiCommand(h, ahs)
	case pdu.OpDataOut:
		return c.dataOut(h)
	case pdu.OpNOPOut:
		return c.nopOut(h)
	case pdu.OpTaskMgmtReq:
		if err := c.discardData(h); err != nil {
			return err
		}
		hh := *h // h is the reader's buffer; the request may be deferred
		c.ordered(h, runFunc(func() { c.taskMgmt(&hh) }))
		return nil
	case pdu.OpTextReq:
		data, err := c.readSmall(h)
		if errors.Is(err, errRejected) {
			return nil
		} else if err != nil {
			return err
		}
		hh := *h
		c.ordered(h, runFunc(func() { c.textRequest(&hh, data) }))
		return nil
	case pdu.OpLogoutReq:
		if err := c.discardData(h); err != nil {
			return err
		}
		var r pdu.LogoutRequest
		r.Decode(h)
		var logout bool
		c.ordered(h, runFunc(func() { logout = c.logout(&r) }))
		if logout {
			return errLogout
		}
		return nil
	case pdu.OpSNACK:
		// ErrorRecoveryLevel 0: SNACK is not supported.
		c.rd.Discard()
		c.reject(pdu.RejectProtocolError, h)
		return nil
	case pdu.OpLoginReq:
		c.rd.Discard()
		c.reject(pdu.RejectProtocolError, h)
		return nil
	}
	// Unknown opcodes, and target opcodes sent by the initiator.
	c.rd.Discard()
	c.reject(pdu.RejectNotSupported, h)
	c.skipCmdSN(h)
	return nil
}

func (c *conn) discardData(h *pdu.BHS) error {
	if err := c.rd.Discard(); err != nil && !errors.Is(err, pdu.ErrDataDigest) {
		return err
	}
	return nil
}

// readSmall reads a data segment into a new buffer (NOP-Out, Text).
func (c *conn) readSmall(h *pdu.BHS) ([]byte, error) {
	n := c.rd.Pending()
	if n == 0 {
		return nil, nil
	}
	b := make([]byte, n)
	if err := c.rd.ReadData(b); err != nil {
		if errors.Is(err, pdu.ErrDataDigest) {
			c.reject(pdu.RejectDataDigest, h)
			c.skipCmdSN(h)
			return nil, errRejected
		}
		return nil, err
	}
	return b, nil
}

// errRejected: the PDU was rejected and must not be processed.
var errRejected = errors.New("iscsi: PDU rejected")

// orderedItem is a request that runs in CmdSN order.
type orderedItem interface{ run() }

// runFunc adapts a function to orderedItem.
type runFunc func()

func (f runFunc) run() { f() }

// ordered runs fn in CmdSN order. Immediate PDUs run at once; a
// non-immediate one with CmdSN == ExpCmdSN runs and advances ExpCmdSN; one
// ahead of ExpCmdSN within the window waits for the gap to fill; anything
// else is silently ignored (RFC 7143 4.2.2.1).
func (c *conn) ordered(h *pdu.BHS, fn orderedItem) {
	if h.Immediate() {
		fn.run()
		return
	}
	sn := h.Word(24)
	exp := c.expCmdSN.Load()
	switch {
	case sn == exp:
		c.expCmdSN.Store(exp + 1)
		fn.run()
		for {
			exp = c.expCmdSN.Load()
			next, ok := c.deferred[exp]
			if !ok {
				return
			}
			delete(c.deferred, exp)
			c.expCmdSN.Store(exp + 1)
			next.run()
		}
	case snLT(exp, sn) && snLE(sn, c.maxCmdSN.Load()):
		if _, dup := c.deferred[sn]; !dup {
			c.deferred[sn] = fn
		}
	default:
		c.log.Debug("CmdSN outside window ignored", "cmdsn", sn, "exp", exp, "max", c.maxCmdSN.Load())
	}
}

// skipCmdSN advances ExpCmdSN past a rejected in-order command.
func (c *conn) skipCmdSN(h *pdu.BHS) {
	if !h.Opcode().FromInitiator() || h.Immediate() {
		return
	}
	switch h.Opcode() {
	case pdu.OpDataOut, pdu.OpSNACK:
		return
	}
	c.ordered(h, runFunc(func() {}))
}

// reject queues a Reject carrying the offending header.
func (c *conn) reject(reason uint8, h *pdu.BHS) {
	p := c.newOut()
	(&pdu.Reject{Reason: reason, DataSN: 0}).Encode(&p.bhs)
	hdr := make([]byte, pdu.BHSLen)
	copy(hdr, h[:])
	p.data = hdr
	p.advanceStatSN = true
	c.queue(p)
}

func (c *conn) nopOut(h *pdu.BHS) error {
	var r pdu.NOPOut
	r.Decode(h)
	data, err := c.readSmall(h)
	if errors.Is(err, errRejected) {
		return nil
	} else if err != nil {
		return err
	}
	if r.ITT == pdu.ReservedTag {
		// An answer to our ping (TTT set) or a one-way NOP-Out: no reply.
		if r.TTT != pdu.ReservedTag {
			c.pingSent.Store(0)
		}
		if !r.Immediate {
			c.reject(pdu.RejectProtocolError, h) // must be immediate (11.18)
		}
		return nil
	}
	if len(data) > c.params.MaxRecvDataSegmentLength {
		data = data[:c.params.MaxRecvDataSegmentLength]
	}
	c.ordered(h, runFunc(func() {
		p := c.newOut()
		(&pdu.NOPIn{LUN: r.LUN, ITT: r.ITT, TTT: pdu.ReservedTag}).Encode(&p.bhs)
		p.data = data
		p.advanceStatSN = true
		c.queue(p)
	}))
	return nil
}

// scsiCommand handles a SCSI Command PDU and its immediate data.
func (c *conn) scsiCommand(h *pdu.BHS, ahs []byte) error {
	var r pdu.SCSICommand
	r.Decode(h)
	o := &c.srv.opts
	immLen := c.rd.Pending()

	fail := func(reason uint8) error {
		if err := c.discardData(h); err != nil {
			return err
		}
		c.reject(reason, h)
		c.skipCmdSN(h)
		return nil
	}
	a, err := pdu.ParseAHS(ahs)
	if err != nil {
		return fail(pdu.RejectInvalidPDUField)
	}
	if immLen > 0 && (!r.Write || !c.params.ImmediateData || uint32(immLen) > r.ExpectedDataTransferLength ||
		immLen > c.params.FirstBurstLength) {
		return fail(pdu.RejectProtocolError)
	}
	if r.Read && r.Write && a.HasBidiReadLength {
		return fail(pdu.RejectNotSupported) // bidirectional commands
	}
	if r.Write && !r.Final && c.params.InitialR2T {
		return fail(pdu.RejectProtocolError) // unsolicited Data-Out not allowed
	}

	t := &cmdTask{c: c, itt: r.ITT, lun: r.LUN, immediate: r.Immediate, edtl: r.ExpectedDataTransferLength}
	t.cdb = r.CDB
	cdb := t.cdb[:]
	if len(a.ExtendedCDB) > 0 {
		cdb = append(append(make([]byte, 0, 16+len(a.ExtendedCDB)), r.CDB[:]...), a.ExtendedCDB...)
	}
	t.cmd = scsi.Command{
		Nexus: c.sess.nexus, LUN: scsi.DecodeLUN(r.LUN), CDB: cdb, Tag: r.ITT,
		Attr: scsi.TaskAttr(r.Attr), Read: r.Read, Write: r.Write, ExpectedLen: r.ExpectedDataTransferLength,
	}
	tooBig := r.Write && r.ExpectedDataTransferLength > uint32(o.MaxTransferLength)
	if r.Write && r.ExpectedDataTransferLength > 0 && !tooBig {
		t.buf = c.srv.pool.get(int(r.ExpectedDataTransferLength))
		if immLen > 0 {
			if err := c.rd.ReadData(t.buf[:immLen]); err != nil {
				c.srv.pool.put(t.buf)
				if errors.Is(err, pdu.ErrDataDigest) {
					c.reject(pdu.RejectDataDigest, h)
					c.skipCmdSN(h)
					return nil
				}
				return err
			}
		}
		t.got = uint32(immLen)
	} else if err := c.discardData(h); err != nil {
		return err
	}
	t.final, t.tooBig = r.Final, tooBig
	c.ordered(h, t)
	return nil
}

// run admits the command (orderedItem).
func (t *cmdTask) run() { t.c.admit(t) }

// admit starts a command in CmdSN order.
func (c *conn) admit(t *cmdTask) {
	final, tooBig := t.final, t.tooBig
	c.stats.commands.Add(1)
	if !t.immediate {
		c.inflight.Add(1)
	}
	t.task = c.targetEntry().cfg.SCSI.Begin(c.ctx, &t.cmd)
	if tooBig {
		c.respondError(t, senseInvalidFieldInCDB)
		return
	}
	if !t.cmd.Write || t.got == t.edtl {
		c.execute(t)
		return
	}
	p := &c.params
	t.unsolNext = t.got
	t.unsolSN = 0
	if p.InitialR2T {
		t.unsolEnd = t.got
		t.unsolDone = true
	} else {
		t.unsolEnd = min(uint32(p.FirstBurstLength), t.edtl)
		t.unsolDone = final
	}
	c.tmu.Lock()
	if _, dup := c.tmu.tasks[t.itt]; dup {
		c.tmu.Unlock()
		c.log.Debug("duplicate initiator task tag", "itt", t.itt)
		c.respondError(t, senseDataPhaseError)
		return
	}
	c.tmu.tasks[t.itt] = t
	if t.unsolDone {
		t.r2tNext = t.unsolNext
		c.issueR2TsLocked(t)
	}
	c.tmu.Unlock()
	t.stopWatch = context.AfterFunc(t.task.Context(), func() { c.abortWaitingTask(t) })
}

// issueR2TsLocked sends R2Ts up to MaxOutstandingR2T. c.tmu is held.
func (c *conn) issueR2TsLocked(t *cmdTask) {
	p := &c.params
	for len(t.r2ts) < p.MaxOutstandingR2T && t.r2tNext < t.edtl {
		n := min(uint32(p.MaxBurstLength), t.edtl-t.r2tNext)
		c.nextTTT++
		if c.nextTTT == pdu.ReservedTag {
			c.nextTTT = 1
		}
		ttt := c.nextTTT
		t.r2ts = append(t.r2ts, r2tState{ttt: ttt, next: t.r2tNext, end: t.r2tNext + n})
		o := c.newOut()
		(&pdu.R2T{LUN: t.lun, ITT: t.itt, TTT: ttt, R2TSN: t.r2tSN, BufferOffset: t.r2tNext,
			DesiredDataTransferLength: n}).Encode(&o.bhs)
		t.r2tSN++
		t.r2tNext += n
		c.queue(o)
	}
}

// abortWaitingTask ends a task aborted while it waited for Data-Out.
func (c *conn) abortWaitingTask(t *cmdTask) {
	c.tmu.Lock()
	if c.tmu.tasks[t.itt] != t {
		c.tmu.Unlock()
		return
	}
	delete(c.tmu.tasks, t.itt)
	t.aborted = true
	busy := t.busy
	c.tmu.Unlock()
	if !busy {
		c.srv.pool.put(t.buf)
	}
	t.task.End()
	c.taskDone(t)
}

// abortWaiting drops every task still waiting for Data-Out (connection end).
func (c *conn) abortWaiting() {
	c.tmu.Lock()
	var ts []*cmdTask
	for _, t := range c.tmu.tasks {
		ts = append(ts, t)
	}
	c.tmu.Unlock()
	for _, t := range ts {
		if t.stopWatch != nil {
			t.stopWatch()
		}
		c.abortWaitingTask(t)
	}
}

// taskDone releases a task's place in the CmdSN window.
func (c *conn) taskDone(t *cmdTask) {
	if !t.immediate {
		c.inflight.Add(-1)
	}
}

// dataOut handles a SCSI Data-Out PDU.
func (c *conn) dataOut(h *pdu.BHS) error {
	var d pdu.DataOut
	d.Decode(h)
	n := uint32(c.rd.Pending())
	c.tmu.Lock()
	t := c.tmu.tasks[d.ITT]
	if t == nil {
		c.tmu.Unlock()
		// Data for a task that ended (aborted or failed): drop it.
		return c.discardData(h)
	}
	var seq *r2tState
	bad := ""
	if d.TTT == pdu.ReservedTag {
		switch {
		case t.unsolDone:
			bad = "unsolicited Data-Out after the unsolicited burst"
		case d.BufferOffset != t.unsolNext:
			bad = "unsolicited Data-Out offset"
		case d.DataSN != t.unsolSN:
			bad = "unsolicited DataSN"
		case d.BufferOffset+n > t.unsolEnd || n > t.edtl:
			bad = "unsolicited data beyond FirstBurstLength"
		}
	} else {
		for i := range t.r2ts {
			if t.r2ts[i].ttt == d.TTT {
				seq = &t.r2ts[i]
			}
		}
		switch {
		case seq == nil:
			bad = "unknown target transfer tag"
		case d.BufferOffset != seq.next:
			bad = "Data-Out offset"
		case d.DataSN != seq.dataSN:
			bad = "DataSN"
		case uint64(d.BufferOffset)+uint64(n) > uint64(seq.end):
			bad = "data beyond the R2T"
		case d.Final && d.BufferOffset+n != seq.end:
			bad = "F bit before the end of the R2T"
		}
	}
	if bad != "" {
		delete(c.tmu.tasks, t.itt)
		c.tmu.Unlock()
		if t.stopWatch != nil {
			t.stopWatch()
		}
		if err := c.discardData(h); err != nil {
			return err
		}
		c.log.Debug("bad Data-Out; failing the command", "itt", t.itt, "why", bad)
		c.respondError(t, senseDataPhaseError)
		return nil
	}
	t.busy = true
	off := d.BufferOffset
	c.tmu.Unlock()

	var err error
	if n > 0 {
		err = c.rd.ReadData(t.buf[off : off+n])
	}

	c.tmu.Lock()
	t.busy = false
	if t.aborted {
		c.tmu.Unlock()
		c.srv.pool.put(t.buf)
		if errors.Is(err, pdu.ErrDataDigest) {
			return nil
		}
		return err
	}
	if err != nil {
		delete(c.tmu.tasks, t.itt)
		c.tmu.Unlock()
		if t.stopWatch != nil {
			t.stopWatch()
		}
		if errors.Is(err, pdu.ErrDataDigest) {
			// ERL 0: no recovery R2T; reject the PDU, fail the command.
			c.reject(pdu.RejectDataDigest, h)
			c.respondError(t, senseCRCError)
			return nil
		}
		c.respondError(t, senseDataPhaseError)
		return err
	}
	t.got += n
	if seq == nil {
		t.unsolNext += n
		t.unsolSN++
		if d.Final || t.unsolNext == t.unsolEnd {
			t.unsolDone = true
			t.r2tNext = t.unsolNext
		}
	} else {
		seq.next += n
		seq.dataSN++
		if seq.next == seq.end {
			for i := range t.r2ts {
				if &t.r2ts[i] == seq {
					t.r2ts = append(t.r2ts[:i], t.r2ts[i+1:]...)
					break
				}
			}
		}
	}
	if t.got >= t.edtl {
		delete(c.tmu.tasks, t.itt)
		c.tmu.Unlock()
		if t.stopWatch != nil {
			t.stopWatch()
		}
		c.execute(t)
		return nil
	}
	if t.unsolDone {
		c.issueR2TsLocked(t)
	}
	c.tmu.Unlock()
	return nil
}

// execute starts the task and sends its response when it is done: a plain
// read or write on a Device with asynchronous I/O completes from the
// Device's completion (no goroutine waits for it), anything else runs in
// a goroutine of its own.
func (c *conn) execute(t *cmdTask) {
	if t.buf != nil {
		t.cmd.DataOut = t.buf[:t.edtl]
	}
	c.taskWG.Add(1)
	if t.task.ExecuteAsync(t) {
		return
	}
	go c.runTask(t)
}

func (c *conn) runTask(t *cmdTask) {
	t.TaskDone(t.task.Execute())
}

// TaskDone implements scsi.Completer: it sends the task's response.
func (t *cmdTask) TaskDone(res scsi.Result) {
	c := t.c
	defer c.taskWG.Done()
	if t.buf != nil {
		c.srv.pool.put(t.buf)
		t.buf = nil
		t.cmd.DataOut = nil
	}
	c.respond(t, res)
}

// Transport-level sense: key, ASC, ASCQ.
type senseCode [3]byte

var (
	senseInvalidFieldInCDB = senseCode{0x05, 0x24, 0x00}
	senseDataPhaseError    = senseCode{0x0b, 0x4b, 0x00}
	senseCRCError          = senseCode{0x0b, 0x47, 0x03} // information unit iuCRC error
)

func (s senseCode) fixed() []byte {
	b := make([]byte, 18)
	b[0] = 0x70
	b[2] = s[0]
	b[7] = 10
	b[12] = s[1]
	b[13] = s[2]
	return b
}

// respondError ends a task that never executed with CHECK CONDITION.
func (c *conn) respondError(t *cmdTask, s senseCode) {
	if t.buf != nil {
		c.srv.pool.put(t.buf)
		t.buf = nil
	}
	c.respond(t, scsi.Result{Status: scsi.StatusCheckCondition, Sense: s.fixed()})
}

// respond sends a task's Data-In and status and ends it.
func (c *conn) respond(t *cmdTask, res scsi.Result) {
	if res.Aborted {
		res.Release()
		t.task.End()
		c.taskDone(t)
		return
	}
	// End the task before its response is queued, not after it was
	// written: an ABORT TASK racing with the response then either aborted
	// the task first (and no response goes out) or finds no task ("task
	// does not exist"), never "function complete" for a task whose GOOD
	// status the initiator already has (RFC 7143 11.6.1).
	t.task.End()
	if cause := context.Cause(t.task.Context()); !errors.Is(cause, context.Canceled) &&
		res.Status != scsi.StatusTaskAborted {
		res.Release()
		c.taskDone(t)
		return
	}
	c.taskDone(t) // before queueing, so the response opens the window
	edtl := t.edtl
	var data []byte
	if t.cmd.Read {
		data = res.Data
		if uint32(len(data)) > edtl {
			data = data[:edtl]
		}
	}
	var over, under bool
	var residual uint32
	switch {
	case res.TransferLen < edtl:
		under, residual = true, edtl-res.TransferLen
	case res.TransferLen > edtl:
		over, residual = true, res.TransferLen-edtl
	}
	statusInData := len(data) > 0 && res.Status == scsi.StatusGood && len(res.Sense) == 0

	maxSeg := c.params.MaxRecvDataSegmentLength
	burst := c.params.MaxBurstLength
	var ps [16]*outPDU
	out := ps[:0]
	var dataSN uint32
	for off := 0; off < len(data); {
		burstEnd := min((off/burst+1)*burst, len(data))
		n := min(maxSeg, burstEnd-off)
		last := off+n == len(data)
		p := c.newOut()
		di := pdu.DataIn{Final: off+n == burstEnd, LUN: t.lun, ITT: t.itt, TTT: pdu.ReservedTag,
			DataSN: dataSN, BufferOffset: uint32(off)}
		if last && statusInData {
			di.HasStatus, di.Final = true, true
			di.Status = uint8(res.Status)
			di.Overflow, di.Underflow, di.ResidualCount = over, under, residual
			p.advanceStatSN = true
			p.res, p.hasRes = res, true
		} else {
			p.noStatSN = true
		}
		di.Encode(&p.bhs)
		p.data = data[off : off+n]
		out = append(out, p)
		if len(out) == cap(out) {
			c.queue(out...)
			out = out[:0]
		}
		dataSN++
		off += n
	}
	if !statusInData {
		p := c.newOut()
		sr := pdu.SCSIResponse{Status: uint8(res.Status), ITT: t.itt, ExpDataSN: dataSN,
			Overflow: over, Underflow: under, ResidualCount: residual}
		sr.Encode(&p.bhs)
		if len(res.Sense) > 0 {
			sense := res.Sense
			if len(sense) > 252 {
				sense = sense[:252]
			}
			b := make([]byte, 2+len(sense))
			b[0], b[1] = byte(len(sense)>>8), byte(len(sense))
			copy(b[2:], sense)
			p.data = b
		}
		p.advanceStatSN = true
		p.res, p.hasRes = res, true
		out = append(out, p)
	}
	c.queue(out...)
}

// taskMgmt performs a task management function in its own goroutine so
// that the reader goes on; the response is sent when the function is done.
func (c *conn) taskMgmt(h *pdu.BHS) {
	var r pdu.TaskMgmtRequest
	r.Decode(h)
	respond := func(code uint8, done func()) {
		p := c.newOut()
		(&pdu.TaskMgmtResponse{Response: code, ITT: r.ITT}).Encode(&p.bhs)
		p.advanceStatSN = true
		p.done = done
		c.queue(p)
	}
	fn := scsi.TMFunction(r.Function)
	switch fn {
	case scsi.TMFTaskReassign:
		respond(pdu.TMFRespReassignUnsupported, nil)
		return
	case scsi.TMFAbortTask, scsi.TMFAbortTaskSet, scsi.TMFClearACA, scsi.TMFClearTaskSet,
		scsi.TMFLogicalUnitReset, scsi.TMFTargetWarmReset, scsi.TMFTargetColdReset,
		scsi.TMFQueryTask, scsi.TMFQueryTaskSet, scsi.TMFITNexusReset, scsi.TMFQueryAsyncEvent:
	default:
		respond(pdu.TMFRespNotSupported, nil)
		return
	}
	te := c.targetEntry()
	req := scsi.TMFRequest{Function: fn, Nexus: c.sess.nexus, LUN: scsi.DecodeLUN(r.LUN), RefTag: r.RTT}
	exp, maxSN := c.expCmdSN.Load(), c.maxCmdSN.Load()
	c.taskWG.Add(1)
	go func() {
		defer c.taskWG.Done()
		ctx, cancel := context.WithTimeout(c.ctx, c.srv.opts.TMFTimeout)
		res := te.cfg.SCSI.ManageTask(ctx, req)
		cancel()
		code := tmfCode(res)
		if fn == scsi.TMFAbortTask && res == scsi.TMFTaskNotFound &&
			snLE(exp, r.RefCmdSN) && snLE(r.RefCmdSN, maxSN) && snLT(r.RefCmdSN, r.CmdSN) {
			// RFC 7143 11.6.1 b): a task inside the window not yet received.
			code = pdu.TMFRespComplete
		}
		c.log.Debug("task management", "function", fn, "lun", req.LUN, "ref", r.RTT, "response", code)
		var done func()
		if fn == scsi.TMFTargetColdReset && code == pdu.TMFRespComplete {
			// Cold reset: drop every session of the target after responding.
			done = func() {
				for _, o := range c.srv.connsOfTarget(te) {
					o.abort(errors.New("target cold reset"))
				}
			}
		}
		respond(code, done)
	}()
}

func tmfCode(r scsi.TMFResponse) uint8 {
	switch r {
	case scsi.TMFFunctionComplete:
		return pdu.TMFRespComplete
	case scsi.TMFFunctionSucceeded:
		return pdu.TMFRespSucceeded
	case scsi.TMFTaskNotFound:
		return pdu.TMFRespTaskNotFound
	case scsi.TMFIncorrectLUN:
		return pdu.TMFRespLUNNotFound
	case scsi.TMFNotSupported:
		return pdu.TMFRespNotSupported
	}
	return pdu.TMFRespRejected
}

// logout answers a Logout Request after the session's commands finished.
// It reports whether the connection should end.
func (c *conn) logout(r *pdu.LogoutRequest) bool {
	code := pdu.LogoutRespSuccess
	switch r.ReasonCode {
	case pdu.LogoutCloseConnection:
		if r.CID != c.cid {
			code = pdu.LogoutRespCIDNotFound
		}
	case pdu.LogoutCloseSession:
	case pdu.LogoutRemoveForRecov:
		code = pdu.LogoutRespRecoveryUnsupp
	default:
		var h pdu.BHS
		r.Encode(&h)
		c.reject(pdu.RejectInvalidPDUField, &h)
		return false
	}
	if code == pdu.LogoutRespSuccess {
		c.abortWaiting()
		c.taskWG.Wait()
	}
	p := c.newOut()
	(&pdu.LogoutResponse{Response: code, ITT: r.ITT, Time2Wait: 0, Time2Retain: 0}).Encode(&p.bhs)
	p.advanceStatSN = true
	c.queue(p)
	return code == pdu.LogoutRespSuccess
}

// String helps debug logs.
func (t *cmdTask) String() string { return fmt.Sprintf("task itt=%#x lun=%d", t.itt, t.cmd.LUN) }
