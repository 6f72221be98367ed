package scsi

import (
	"time"

	"github.com/lunway/lunway/blockdev"
)

// Completer receives the Result of a task started with ExecuteAsync. Done
// must not block: it may run on a Device's completion goroutine.
type Completer interface {
	TaskDone(res Result)
}

// ExecuteAsync is Execute for a transport that does not want a goroutine
// per command. When the command is a READ or WRITE (10, 12 or 16) on a
// Device with asynchronous I/O (blockdev.AsyncIO) and waits for no other
// task, it takes the task over and returns true: done.TaskDone is then
// called exactly once with what Execute would have returned, on any
// goroutine, possibly before ExecuteAsync returns. The Device is not
// waited for: its completion ends the command. Otherwise ExecuteAsync
// returns false having done nothing, and the caller uses Execute.
//
// What cannot start without waiting (a write with FUA or to a range that
// COMPARE AND WRITE holds, a Device with no request slot free) is carried
// out by Execute's path on a goroutine of its own.
func (task *Task) ExecuteAsync(done Completer) bool {
	lu := task.lu
	if lu == nil || lu.aio == nil || len(task.deps) != 0 || !asyncOpcode(task.cmd.CDB) || task.ctx.Err() != nil {
		return false
	}
	if !task.state.CompareAndSwap(taskPending, taskExecuting) {
		return false
	}
	t := task.target
	op, saUnknown := t.table.lookup(task.cmd.CDB)
	r := t.newRequest(task.ctx, lu, task.cmd, op)
	r.task, r.done, r.start = task, done, time.Now()
	lu.stats.begin()
	if res, ok := r.admit(saUnknown); !ok {
		r.finish(res)
		return true
	}
	if r.cdb[0]&0x0f == 0x08 { // READ (10, 12, 16)
		r.startRead()
	} else {
		r.startWrite()
	}
	return true
}

// asyncOpcode reports the commands ExecuteAsync takes: READ and WRITE
// (10), (12) and (16).
func asyncOpcode(cdb []byte) bool {
	if len(cdb) == 0 {
		return false
	}
	switch cdb[0] {
	case 0x28, 0xa8, 0x88, 0x2a, 0xaa, 0x8a:
		return true
	}
	return false
}

func (r *request) startRead() {
	lba, n, lf := lbaLen(r.cdb)
	off, length, res, ok := r.readArgs(lba, n, lf)
	if !ok {
		r.finish(res)
		return
	}
	r.read = true
	r.buf, r.bufRel = r.lu.pool.get(int(length))
	if r.lu.aio.StartReadAt(r.ctx, r.buf, off, r) {
		return
	}
	go func() { r.Done(r.lu.dev.ReadAt(r.ctx, r.buf, off)) }()
}

func (r *request) startWrite() {
	lba, n, lf := lbaLen(r.cdb)
	off, length, res, ok := r.writeArgs(lba, n, lf)
	if !ok {
		r.finish(res)
		return
	}
	if r.writeFlags(r.cdb[1]&0x08 != 0) == 0 {
		if r.lu.caw == nil {
			r.lockID = r.lu.ranges.tryLock(off, length)
		}
		if r.lockID != 0 || r.lu.caw != nil {
			if r.lu.aio.StartWriteAt(r.ctx, r.cmd.DataOut[:length], off, r) {
				return
			}
			if r.lockID != 0 {
				r.lu.ranges.unlock(r.lockID)
				r.lockID = 0
			}
		}
	}
	// FUA, a range held by COMPARE AND WRITE, or no slot: the synchronous
	// path, which waits, on a goroutine of its own.
	go func() { r.finish(r.op.handle(r)) }()
}

// Done implements blockdev.Completion for the request's Device I/O.
func (r *request) Done(err error) {
	if r.lockID != 0 {
		r.lu.ranges.unlock(r.lockID)
	}
	var res Result
	switch {
	case err != nil:
		if r.bufRel != nil {
			r.bufRel()
		}
		res = r.failErr(err)
	case r.read:
		res = Result{Data: r.buf, TransferLen: uint32(len(r.buf)), release: r.bufRel}
	default:
		res = Result{TransferLen: r.xfer}
	}
	r.finish(res)
}

// finish ends an asynchronous task with res, as Execute would return it.
func (r *request) finish(res Result) {
	task, done, lu := r.task, r.done, r.lu
	lu.stats.end(r.cdb[0], &res, time.Since(r.start))
	r.t.freeRequest(r)
	if task.ctx.Err() != nil {
		res.Release()
		res = task.abortedResult()
	}
	task.markFinished()
	done.TaskDone(res)
}

var _ blockdev.Completion = (*request)(nil)
