package scsi

import (
	"context"
	"sync"
)

// rangeLock serializes COMPARE AND WRITE against the other writes of an
// LU whose Device cannot compare and write atomically itself. Writes take
// a range shared (they may overlap each other: the Device orders them);
// COMPARE AND WRITE takes its range exclusive, so that no write lands
// between its read and its write.
type rangeLock struct {
	mu      sync.Mutex
	held    []heldRange
	changed chan struct{} // closed and replaced whenever a range is released
	nextID  uint64
}

type heldRange struct {
	id        uint64
	off, end  int64
	exclusive bool
}

func (l *rangeLock) init() { l.changed = make(chan struct{}) }

// lock takes [off, off+length). It returns an unlock function, or nil
// when ctx ended first.
func (l *rangeLock) lock(ctx context.Context, off, length int64, exclusive bool) func() {
	end := off + length
	for {
		l.mu.Lock()
		conflict := false
		for _, h := range l.held {
			if h.off < end && off < h.end && (exclusive || h.exclusive) {
				conflict = true
				break
			}
		}
		if !conflict {
			l.nextID++
			id := l.nextID
			l.held = append(l.held, heldRange{id: id, off: off, end: end, exclusive: exclusive})
			l.mu.Unlock()
			return func() { l.unlock(id) }
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil
		}
	}
}

// tryLock takes [off, off+length) shared if no exclusive holder overlaps
// it, without waiting. It returns the id to unlock, or 0.
func (l *rangeLock) tryLock(off, length int64) uint64 {
	end := off + length
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range l.held {
		if h.off < end && off < h.end && h.exclusive {
			return 0
		}
	}
	l.nextID++
	l.held = append(l.held, heldRange{id: l.nextID, off: off, end: end})
	return l.nextID
}

func (l *rangeLock) unlock(id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, h := range l.held {
		if h.id == id {
			l.held = append(l.held[:i], l.held[i+1:]...)
			break
		}
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

func noUnlock() {}

// lockWrite takes a write's range shared when COMPARE AND WRITE is
// emulated; when the Device compares and writes atomically itself, writes
// need no lock. It returns nil when ctx ended while waiting.
func (lu *LU) lockWrite(ctx context.Context, off, length int64) func() {
	if lu.caw != nil {
		return noUnlock
	}
	return lu.ranges.lock(ctx, off, length, false)
}

// COMPARE AND WRITE (SBC-3 5.2). The data-out buffer holds the verify
// data then the write data, NUMBER OF LOGICAL BLOCKS each. The compare and
// the write are atomic against every other write to the range: through
// the Device's CompareAndWriter, or under an exclusive range lock that
// every write of this LU respects. On a mismatch nothing is written and
// MISCOMPARE (0E/1D/00) reports the offset of the first differing byte.
func (r *request) compareAndWrite() Result {
	cdb := r.cdb
	if cdb[1]>>5 != 0 { // WRPROTECT
		return r.fail(invalidCDB(1, 7))
	}
	lba := be64(cdb[2:10])
	n := uint32(cdb[13])
	off, length, s, ok := r.checkRange(lba, uint64(n))
	if !ok {
		return r.fail(s)
	}
	if n > r.lu.lim.maxCAW {
		return r.fail(invalidCDB(13, -1))
	}
	r.xfer = uint32(2 * length)
	// The data-out buffer must be exactly verify + write data: a
	// different size means the initiator and the CDB disagree, and
	// guessing which half is which could write the wrong data.
	if int64(len(r.cmd.DataOut)) != 2*length {
		return r.fail(invalidCDB(13, -1))
	}
	if s, ok := r.writeProtected(); ok {
		return r.fail(s)
	}
	if n == 0 {
		return Result{}
	}
	cmp, data := r.cmd.DataOut[:length], r.cmd.DataOut[length:2*length]
	flags := r.writeFlags(cdb[1]&0x08 != 0)
	if r.lu.caw != nil {
		if err := r.lu.caw.CompareAndWrite(r.ctx, cmp, data, off, flags); err != nil {
			return r.failErr(err)
		}
		return Result{TransferLen: r.xfer}
	}
	unlock := r.lu.ranges.lock(r.ctx, off, length, true)
	if unlock == nil {
		return r.failErr(r.ctx.Err())
	}
	defer unlock()
	cur, rel := r.lu.pool.get(int(length))
	if rel != nil {
		defer rel()
	}
	if err := r.lu.dev.ReadAt(r.ctx, cur, off); err != nil {
		return r.failErr(err)
	}
	if d := firstDiff(cur, cmp); d >= 0 {
		return r.fail(senseData{key: senseMiscompare, asc: ascMiscompareDuringVerify, info: uint64(d), infoValid: true})
	}
	if err := r.lu.dev.WriteAt(r.ctx, data, off, flags); err != nil {
		return r.failErr(err)
	}
	return Result{TransferLen: r.xfer}
}
