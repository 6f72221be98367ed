package blockmap

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/blockmap/format"
)

// segWriter builds one segment in memory: a sequence of records, each a
// header (reserved when the record opens, filled in when it closes)
// followed by its payload.
//
//	0          recStart      recStart+hdr          tail
//	| closed records | header (reserved) | payload… |  (free up to capBytes)
//	                 ^ open record
//
// Bytes [0, closedTail) are complete records and may be written to the
// store; [0, durable) already are. Segment data is immutable once
// appended, so readers may copy from buf without the volume lock after
// capturing the slice under it.
//
// All fields except wmu are guarded by the owner: the Volume's mu for the
// data and GC streams, the checkpointer for the meta stream.
type segWriter struct {
	seq        uint64
	kind       format.RecordKind
	id         [16]byte
	blockSize  uint32
	hdrReserve int // header bytes reserved per record
	capBytes   int // the segment is full at this many bytes

	buf        []byte
	tail       int
	recStart   int // -1: no open record
	entries    []format.Entry
	closedTail int
	durable    int
	sealed     bool
	done       bool // sealed and completely durable

	// wmu is held while this segment is being written to the store, so
	// that a flush and the sealer never write it at the same time.
	wmu sync.Mutex

	// readers counts resolutions that may still copy from buf; the buffer
	// is recycled only once the segment is retired (durable, out of
	// Volume.mu.mem, so no new reader can find it) and readers is zero.
	readers  atomic.Int32
	retired  atomic.Bool
	recycled atomic.Bool
	pooled   bool // buf came from, and goes back to, the volume's free list
}

// bufPool is a small free list of segment buffers: reusing them avoids
// faulting in fresh memory for every segment.
type bufPool struct {
	size int
	free chan []byte
}

func newBufPool(size, keep int) *bufPool {
	return &bufPool{size: size, free: make(chan []byte, keep)}
}

func (p *bufPool) get() []byte {
	select {
	case b := <-p.free:
		return b
	default:
		return make([]byte, p.size)
	}
}

func (p *bufPool) put(b []byte) {
	if cap(b) != p.size {
		return
	}
	select {
	case p.free <- b[:p.size]:
	default:
	}
}

// forgetMemLocked removes a segment from mu.mem and updates memMin.
func (v *Volume) forgetMemLocked(seq uint64) {
	delete(v.mu.mem, seq)
	m := uint64(math.MaxUint64)
	for s := range v.mu.mem {
		m = min(m, s)
	}
	v.memMin.Store(m)
}

// unref drops one reader; the last one out of a retired segment
// recycles its buffer.
func (v *Volume) unrefSeg(w *segWriter) {
	if w.readers.Add(-1) == 0 && w.retired.Load() {
		v.recycleSeg(w)
	}
}

func (v *Volume) recycleSeg(w *segWriter) {
	if w.pooled && w.recycled.CompareAndSwap(false, true) {
		v.bufs.put(w.buf)
	}
}

func newSegWriter(seq uint64, kind format.RecordKind, id [16]byte, blockSize uint32, capBytes int) *segWriter {
	hdr := format.SectorSize
	if kind == format.RecordMeta {
		hdr = 4096
	}
	return &segWriter{seq: seq, kind: kind, id: id, blockSize: blockSize, hdrReserve: hdr, capBytes: capBytes, recStart: -1}
}

// grow makes room for n more bytes after tail. The buffer starts small
// and doubles up to capBytes, so that short segments (flushed early on
// stores without Overwriter) stay cheap.
func (w *segWriter) grow(n int) {
	need := w.tail + n
	if need <= len(w.buf) {
		return
	}
	w.pooled = false // a grown buffer is not the pool's size
	c := max(len(w.buf), 64<<10)
	for c < need {
		c *= 2
	}
	c = min(c, max(w.capBytes, need))
	nb := make([]byte, c)
	copy(nb, w.buf[:w.tail])
	w.buf = nb
}

// room reports how many payload bytes fit in the segment if one more
// entry is added (opening a record if needed).
func (w *segWriter) room() int {
	if w.sealed {
		return -1
	}
	if w.recStart >= 0 && len(w.entries) < format.EntriesFit(w.hdrReserve) {
		return w.capBytes - w.tail
	}
	// A new record is needed (the open one, if any, is closed first).
	return w.capBytes - w.tail - w.hdrReserve
}

// appendEntry adds e with its payload to the open record, opening one
// when needed. The caller checked room() >= len(payload) (and >= 0).
// It returns the segment offset of the payload.
func (w *segWriter) appendEntry(e format.Entry, payload []byte) int {
	if w.recStart >= 0 && len(w.entries) >= format.EntriesFit(w.hdrReserve) {
		w.closeRecord()
	}
	if w.recStart < 0 {
		w.grow(w.hdrReserve)
		w.recStart = w.tail
		w.tail += w.hdrReserve
	}
	off := w.tail
	if len(payload) > 0 {
		w.grow(len(payload))
		copy(w.buf[w.tail:], payload)
		w.tail += len(payload)
	}
	w.entries = append(w.entries, e)
	return off
}

// closeRecord fills in the open record's header: pads the payload to a
// sector, computes its checksum and the header's.
func (w *segWriter) closeRecord() {
	if w.recStart < 0 {
		return
	}
	if len(w.entries) == 0 {
		w.tail = w.recStart
		w.recStart = -1
		return
	}
	payStart := w.recStart + w.hdrReserve
	if pad := format.PadPayload(w.tail-payStart) - (w.tail - payStart); pad > 0 {
		w.grow(pad)
		clear(w.buf[w.tail : w.tail+pad])
		w.tail += pad
	}
	h := format.RecordHeader{
		Kind:       w.kind,
		HeaderLen:  uint32(w.hdrReserve),
		ID:         w.id,
		Seq:        w.seq,
		Offset:     uint32(w.recStart),
		PayloadLen: uint32(w.tail - payStart),
		PayloadCRC: format.Checksum(w.buf[payStart:w.tail]),
		Entries:    w.entries,
	}
	format.PutRecordHeader(w.buf[w.recStart:payStart], &h)
	w.entries = w.entries[:0]
	w.recStart = -1
	w.closedTail = w.tail
}

// stream returns the open segment of a stream, opening a new one when
// there is none.
func (v *Volume) streamLocked(kind format.RecordKind) *segWriter {
	p := &v.mu.data
	if kind == format.RecordGC {
		p = &v.mu.gc
	}
	if *p == nil {
		w := newSegWriter(v.allocSeqLocked(), kind, v.sb.ID, v.bs, v.segSize)
		if v.ow != nil {
			// Segments fill up (flushes append in place): take a whole
			// buffer instead of growing and copying.
			w.buf = v.bufs.get()
			w.pooled = true
		}
		*p = w
		v.mu.mem[w.seq] = w
		v.memMin.Store(min(v.memMin.Load(), w.seq))
		v.mu.segs[w.seq] = &segMeta{kind: kind, open: true}
	}
	return *p
}

func (v *Volume) allocSeqLocked() uint64 {
	s := v.mu.nextSeq
	v.mu.nextSeq++
	return s
}

// sealLocked closes a stream's open segment and queues it for writing.
func (v *Volume) sealLocked(kind format.RecordKind) {
	p := &v.mu.data
	if kind == format.RecordGC {
		p = &v.mu.gc
	}
	w := *p
	if w == nil {
		return
	}
	*p = nil
	w.closeRecord()
	w.sealed = true
	if w.tail == 0 {
		// Never written: forget it (its number is simply skipped).
		v.forgetMemLocked(w.seq)
		delete(v.mu.segs, w.seq)
		w.done = true
		v.retireSegLocked(w)
		return
	}
	v.mu.sealQ = append(v.mu.sealQ, w)
	v.signalLocked()
}

// appendLocked appends an entry to a stream, rolling to a new segment
// when the open one lacks room for payloadLen bytes. It returns the
// segment and the payload's offset.
func (v *Volume) appendLocked(kind format.RecordKind, e format.Entry, payload []byte) (*segWriter, int) {
	for {
		w := v.streamLocked(kind)
		if w.room() >= len(payload) {
			before := w.tail
			off := w.appendEntry(e, payload)
			v.mu.dirtyBytes += int64(w.tail - before)
			v.mu.journalBytes += int64(w.tail - before)
			return w, off
		}
		v.sealLocked(kind)
	}
}

// writeBlocksLocked appends n blocks of payload p for LBA start to a
// stream as entries of kind ek, splitting across segments as they fill,
// and calls apply for each piece with its location.
func (v *Volume) writeBlocksLocked(kind format.RecordKind, ek format.EntryKind, start uint64, p []byte, src loc, apply func(start, n uint64, l loc)) {
	bs := uint64(v.bs)
	for len(p) > 0 {
		w := v.streamLocked(kind)
		room := w.room()
		if room < int(bs) {
			v.sealLocked(kind)
			continue
		}
		n := min(uint64(len(p))/bs, uint64(room)/bs, 1<<31)
		e := format.Entry{Kind: ek, Count: uint32(n), LBA: start}
		if ek == format.EntryMove {
			e.SrcSeq, e.SrcOff = src.seq, src.off
			src = src.advance(n, v.bs)
		}
		before := w.tail
		off := w.appendEntry(e, p[:n*bs])
		v.mu.dirtyBytes += int64(w.tail - before)
		v.mu.journalBytes += int64(w.tail - before)
		apply(start, n, loc{seq: w.seq, off: uint32(off)})
		start += n
		p = p[n*bs:]
	}
}

// writeSegment writes what is pending of w to the store: in place from
// the durable mark when the store can overwrite, else the whole segment
// with Put (only ever done once the segment is sealed). It returns after
// the write is durable or failed.
func (v *Volume) writeSegment(ctx context.Context, w *segWriter) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	v.mu.Lock()
	from, to := w.durable, w.closedTail
	buf := w.buf
	sealed := w.sealed
	v.mu.Unlock()
	if to <= from {
		if sealed {
			v.markDone(w)
		}
		return nil
	}
	name := format.SegmentName(v.name, w.seq)
	var err error
	if v.ow != nil {
		err = v.ow.WriteAt(ctx, name, buf[from:to], int64(from))
	} else {
		from = 0
		err = v.store.Put(ctx, name, buf[:to])
	}
	v.stats.backendWriteOps.Add(1)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, backend.ErrUnavailable) {
			err = fmt.Errorf("%w: %w", backend.ErrUnavailable, err)
		}
		v.mu.Lock()
		v.mu.ioErr = err
		v.signalLocked()
		v.mu.Unlock()
		return objErr(name, int64(from), err)
	}
	v.stats.backendWriteBytes.Add(int64(to - from))
	v.mu.Lock()
	v.mu.ioErr = nil
	if to > w.durable {
		v.mu.dirtyBytes -= int64(to - w.durable)
		w.durable = to
	}
	if s := v.mu.segs[w.seq]; s != nil {
		s.size = int64(to)
	}
	v.signalLocked()
	v.mu.Unlock()
	if sealed {
		v.markDone(w)
	}
	return nil
}

// markDone retires a sealed segment that is completely durable: reads go
// to the store from now on.
func (v *Volume) markDone(w *segWriter) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if w.done {
		return
	}
	w.done = true
	if v.mu.mem[w.seq] == w {
		v.forgetMemLocked(w.seq)
	}
	if s := v.mu.segs[w.seq]; s != nil {
		s.open = false
		s.size = int64(w.tail)
	}
	v.signalLocked()
	v.retireSegLocked(w)
}

// retireSegLocked marks a segment no longer findable by readers and
// recycles its buffer once the last reader is done.
func (v *Volume) retireSegLocked(w *segWriter) {
	w.retired.Store(true)
	if w.readers.Load() == 0 {
		v.recycleSeg(w)
	}
}

// signalLocked wakes everyone waiting for a state change.
func (v *Volume) signalLocked() {
	close(v.mu.changed)
	v.mu.changed = make(chan struct{})
}

// waitLocked releases the lock until the next state change or ctx's end.
func (v *Volume) waitLocked(ctx context.Context) error {
	ch := v.mu.changed
	v.mu.Unlock()
	defer v.mu.Lock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sealer writes sealed segments in the background, retrying failures
// with backoff until they succeed or the volume shuts down.
func (v *Volume) sealer(ctx context.Context) {
	defer v.bg.wg.Done()
	backoff := 10 * time.Millisecond
	for {
		v.mu.Lock()
		for len(v.mu.sealQ) == 0 {
			if ctx.Err() != nil {
				v.mu.Unlock()
				return
			}
			if err := v.waitLocked(ctx); err != nil {
				v.mu.Unlock()
				return
			}
		}
		w := v.mu.sealQ[0]
		v.mu.sealQ = v.mu.sealQ[1:]
		v.mu.sealing++
		v.mu.Unlock()
		for {
			wctx, cancel := context.WithTimeout(ctx, v.opts.StoreTimeout)
			err := v.writeSegment(wctx, w)
			cancel()
			if err == nil {
				backoff = 10 * time.Millisecond
				break
			}
			if ctx.Err() != nil {
				// Shutting down: put it back for Close to see.
				v.mu.Lock()
				v.mu.sealQ = append([]*segWriter{w}, v.mu.sealQ...)
				v.mu.sealing--
				v.mu.Unlock()
				return
			}
			v.log.Warn("blockmap: writing segment failed; retrying", "volume", v.name, "seq", w.seq, "err", err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(backoff*2, 2*time.Second)
		}
		v.mu.Lock()
		v.mu.sealing--
		v.signalLocked()
		v.mu.Unlock()
	}
}

// flushData makes every data-stream record appended so far durable: the
// open segment's new tail is written in place (Overwriter) or the segment
// is sealed and put; sealed segments queued before are waited for.
// Concurrent callers share one write (group commit).
func (v *Volume) flushData(ctx context.Context) error {
	v.mu.Lock()
	// Everything up to this point must be durable when we return.
	target := v.mu.nextSeq
	v.mu.Unlock()

	v.flushMu.Lock()
	defer v.flushMu.Unlock()
	v.mu.Lock()
	w := v.mu.data
	if w != nil && w.seq < target {
		w.closeRecord()
		if v.ow == nil && w.closedTail > w.durable {
			v.sealLocked(format.RecordData)
			w = nil
		}
	} else {
		w = nil
	}
	v.mu.Unlock()
	if w != nil {
		if err := v.writeSegment(ctx, w); err != nil {
			return err
		}
	}
	return v.waitSealed(ctx, target, format.RecordData)
}

// waitSealed makes every sealed segment below seq target of the given
// kind (0: any kind) durable, writing them itself rather than waiting
// for the sealers (which may be backing off after a failure). It returns
// the first write error.
func (v *Volume) waitSealed(ctx context.Context, target uint64, kind format.RecordKind) error {
	for {
		var pending []*segWriter
		v.mu.Lock()
		for seq, w := range v.mu.mem {
			if seq < target && w.sealed && !w.done && (kind == 0 || w.kind == kind) {
				pending = append(pending, w)
			}
		}
		stopped := v.mu.bgStopped
		v.mu.Unlock()
		if len(pending) == 0 {
			return nil
		}
		if stopped {
			return fmt.Errorf("blockmap: %s: segments left unwritten at shutdown: %w", v.name, errShutdown)
		}
		slices.SortFunc(pending, func(a, b *segWriter) int { return cmp.Compare(a.seq, b.seq) })
		// Each write is durable on its own (an fsync on a local store):
		// overlap a few.
		errs := make([]error, len(pending))
		var wg sync.WaitGroup
		sem := make(chan struct{}, 4)
		for i, w := range pending {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				errs[i] = v.writeSegment(ctx, w)
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return fmt.Errorf("blockmap: %s: writing segments: %w", v.name, err)
			}
		}
	}
}
