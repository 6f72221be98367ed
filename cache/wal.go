package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lunway/lunway/backend"
)

// The log directory holds files named after the sequence number of their
// first record, in hex ("000000000000002a.log"), each a run of records
// (record.go). Records are appended to the newest file; when it reaches
// Options.LogFileBytes it is synced and a new one is started, so that
// after a crash only the newest file can end in a torn record. A file is
// deleted once every record in it has been applied to the store.
//
// The file "applied" (next to the log directory) holds the sequence
// number of the last record known to be applied, written without sync
// after every upload: a stale value only makes the next Open apply again
// records that are already applied, which is harmless (every record sets
// bytes to absolute values).
//
//	applied:  0 seq u64 | 8 crc32c(seq) u32 | 12 magic "LWCA" u32

const (
	logSubdir       = "log"
	logSuffix       = ".log"
	appliedName     = "applied"
	appliedMagic    = 0x4143574c // "LWCA"
	lockName        = "LOCK"
	smallRecordCopy = 256 << 10 // records up to this size are written with one pwrite
)

// logFile is one file of the log. Fields are guarded by Cache.mu, except
// f, which is safe for concurrent ReadAt/WriteAt/Sync.
type logFile struct {
	id      uint64 // seq of its first record; names the file
	f       File
	size    int64
	lastSeq uint64 // last record in it; 0 when empty
	refs    int    // syncs using f
	retired bool   // removed from the log; deleted when unused (collectLocked)
	// retiredAt is the Cache epoch the file was retired at: views opened
	// before it may still read the file.
	retiredAt uint64
}

func logFileName(id uint64) string { return fmt.Sprintf("%016x%s", id, logSuffix) }

// rec is a record not yet applied to the store.
type rec struct {
	seq      uint64
	kind     recordKind
	name     string
	off      int64 // WriteAt: object offset
	data     span  // where the data lies in the log
	unixNano int64
}

// span is a run of bytes in a log file.
type span struct {
	file *logFile
	off  int64
	n    int64
}

// read reads the span's bytes [from, from+len(p)) into p.
func (s span) read(p []byte, from int64) error {
	if len(p) == 0 {
		return nil
	}
	if from < 0 || from+int64(len(p)) > s.n {
		return fmt.Errorf("cache: read of %d bytes at %d from a log span of %d: %w", len(p), from, s.n, backend.ErrCorrupt)
	}
	n, err := s.file.f.ReadAt(p, s.off+from)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("cache: reading log file %s: %w", logFileName(s.file.id), err)
}

// syncer makes appended records durable with group commit: one
// fdatasync covers every record written before it started.
type syncer struct {
	durable atomic.Uint64 // highest seq known durable

	mu      sync.Mutex
	running bool
	round   chan struct{} // closed when the running sync ends
	err     error         // sticky: a failed sync breaks the log
}

// waitDurable returns once record seq is durable, running a sync when
// none is running that would cover it.
func (c *Cache) waitDurable(ctx context.Context, seq uint64) error {
	s := &c.sy
	for {
		if s.durable.Load() >= seq {
			return nil
		}
		s.mu.Lock()
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return err
		}
		if s.durable.Load() >= seq {
			s.mu.Unlock()
			return nil
		}
		if s.running {
			ch := s.round
			s.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		s.running = true
		s.round = make(chan struct{})
		s.mu.Unlock()

		// Every record up to target is written to cur (records of older
		// files were synced when the log moved past them).
		c.mu.Lock()
		target, f := c.mu.written, c.mu.cur
		if f != nil {
			f.refs++
		}
		c.mu.Unlock()
		var err error
		if f != nil {
			err = f.f.Sync()
			c.stats.syncs.Add(1)
			c.mu.Lock()
			c.releaseFileLocked(f)
			c.mu.Unlock()
		}
		s.mu.Lock()
		s.running = false
		close(s.round)
		if err != nil {
			s.err = fmt.Errorf("%w: fdatasync: %w", ErrLogBroken, err)
			s.mu.Unlock()
			c.breakLog(s.err)
			return s.err
		}
		if target > s.durable.Load() {
			s.durable.Store(target)
		}
		s.mu.Unlock()
		c.mu.Lock()
		c.signalLocked()
		c.mu.Unlock()
	}
}

// breakLog records a failure of the local disk: writes are refused from
// now on.
func (c *Cache) breakLog(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.broken == nil {
		c.mu.broken = err
		c.log.Error("cache: the local log failed; refusing writes until reopened", "dir", c.opts.Dir, "err", err)
		c.updateHealthLocked()
		c.signalLocked()
	}
}

// appendRecord writes one record to the log and queues it for upload. It
// returns the record's seq once written (not yet durable: see
// waitDurable). The caller holds appendMu.
func (c *Cache) appendRecord(ctx context.Context, kind recordKind, name string, off int64, data []byte) (uint64, error) {
	need := recordLen(len(name), int64(len(data)))
	if err := c.waitRoom(ctx, need); err != nil {
		return 0, err
	}
	c.mu.Lock()
	if err := c.mu.broken; err != nil {
		c.mu.Unlock()
		return 0, err
	}
	cur := c.mu.cur
	c.mu.Unlock()
	if cur == nil || cur.size >= c.opts.LogFileBytes {
		var err error
		if cur, err = c.roll(); err != nil {
			c.breakLog(err)
			return 0, err
		}
	}
	c.mu.Lock()
	seq := c.mu.nextSeq
	c.mu.nextSeq++
	at := cur.size
	c.mu.Unlock()

	now := time.Now().UnixNano()
	buf, pad := appendRecordHeader(c.hdrBuf[:0], seq, kind, name, off, now, data)
	dataOff := at + int64(len(buf))
	var err error
	if len(data) <= smallRecordCopy {
		buf = append(buf, data...)
		buf = append(buf, make([]byte, pad)...)
		_, err = cur.f.WriteAt(buf, at)
	} else {
		if _, err = cur.f.WriteAt(buf, at); err == nil {
			if _, err = cur.f.WriteAt(data, dataOff); err == nil && pad > 0 {
				_, err = cur.f.WriteAt(make([]byte, pad), dataOff+int64(len(data)))
			}
		}
	}
	if cap(buf) <= 2*smallRecordCopy {
		c.hdrBuf = buf[:0]
	}
	if err != nil {
		err = fmt.Errorf("%w: writing %s: %w", ErrLogBroken, logFileName(cur.id), err)
		c.breakLog(err)
		return 0, err
	}
	r := &rec{seq: seq, kind: kind, name: name, off: off, unixNano: now,
		data: span{file: cur, off: dataOff, n: int64(len(data))}}
	c.mu.Lock()
	cur.size = at + need
	cur.lastSeq = seq
	c.mu.usedBytes += need
	c.mu.written = seq
	c.mu.queue = append(c.mu.queue, r)
	c.mu.queuedBytes += int64(len(data))
	c.indexLocked(r)
	c.mu.Unlock()
	c.stats.appends.Add(1)
	c.stats.appendBytes.Add(int64(len(data)))
	return seq, nil
}

// roll syncs the current file (so that only the newest file can hold a
// torn record) and starts a new one. The caller holds appendMu.
func (c *Cache) roll() (*logFile, error) {
	c.mu.Lock()
	old := c.mu.cur
	if old != nil {
		old.refs++
	}
	id := c.mu.nextSeq
	c.mu.Unlock()
	if old != nil {
		err := old.f.Sync()
		c.mu.Lock()
		c.releaseFileLocked(old)
		c.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("%w: fdatasync %s: %w", ErrLogBroken, logFileName(old.id), err)
		}
	}
	name := path.Join(c.logDir, logFileName(id))
	f, err := c.fs.Create(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLogBroken, err)
	}
	if err := c.fs.SyncDir(c.logDir); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: sync %s: %w", ErrLogBroken, c.logDir, err)
	}
	lf := &logFile{id: id, f: f}
	c.mu.Lock()
	c.mu.files = append(c.mu.files, lf)
	c.mu.cur = lf
	if old != nil && old.lastSeq <= c.mu.applied {
		c.retireFileLocked(old)
	}
	c.mu.Unlock()
	return lf, nil
}

// waitRoom waits until need more bytes fit in the log, at most FullWait.
// The caller holds appendMu.
func (c *Cache) waitRoom(ctx context.Context, need int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var timer <-chan time.Time
	for c.mu.usedBytes+need > c.opts.LogBytes {
		if c.mu.closed {
			return fmt.Errorf("cache: %w", backend.ErrClosed)
		}
		if cur := c.mu.cur; cur != nil && cur.lastSeq <= c.mu.applied && cur.size > 0 {
			// Everything in the current file is uploaded: drop it.
			c.mu.cur = nil
			c.retireFileLocked(cur)
			continue
		}
		if timer == nil {
			t := time.NewTimer(c.opts.FullWait)
			defer t.Stop()
			timer = t.C
			c.stats.roomWaits.Add(1)
		}
		c.mu.waitingForRoom++
		c.updateHealthLocked()
		c.signalLocked() // the uploader stops holding back
		ch := c.mu.changed
		c.mu.Unlock()
		var err error
		select {
		case <-ch:
		case <-ctx.Done():
			err = ctx.Err()
		case <-timer:
			err = fmt.Errorf("%w for %v (%d bytes pending upload; the store is not taking them): %w",
				ErrLogFull, c.opts.FullWait, c.mu.usedBytes, backend.ErrUnavailable)
		}
		c.mu.Lock()
		c.mu.waitingForRoom--
		c.updateHealthLocked()
		if err != nil {
			return err
		}
	}
	return nil
}

// retireFileLocked removes a file whose records are all applied from the
// log; it is deleted once nothing uses it.
func (c *Cache) retireFileLocked(f *logFile) {
	if f.retired {
		return
	}
	f.retired = true
	c.mu.epoch++
	f.retiredAt = c.mu.epoch
	c.mu.usedBytes -= f.size
	for i, g := range c.mu.files {
		if g == f {
			c.mu.files = append(c.mu.files[:i], c.mu.files[i+1:]...)
			break
		}
	}
	if c.mu.cur == f {
		c.mu.cur = nil
	}
	c.mu.graveyard = append(c.mu.graveyard, f)
	c.collectLocked()
	c.signalLocked()
}

func (c *Cache) releaseFileLocked(f *logFile) {
	f.refs--
	if f.retired {
		c.collectLocked()
	}
}

// collectLocked deletes retired files that no sync and no view uses: a
// view opened before a file was retired may read it.
func (c *Cache) collectLocked() {
	if len(c.mu.graveyard) == 0 {
		return
	}
	minView := ^uint64(0)
	for e := range c.mu.viewsAt {
		minView = min(minView, e)
	}
	keep := c.mu.graveyard[:0]
	for _, f := range c.mu.graveyard {
		if f.refs > 0 || f.retiredAt > minView {
			keep = append(keep, f)
			continue
		}
		c.deleteFileLocked(f)
	}
	clear(c.mu.graveyard[len(keep):])
	c.mu.graveyard = keep
}

// deleteFileLocked closes and removes a retired file. A failure leaves a
// file that the next Open finds fully applied and deletes.
func (c *Cache) deleteFileLocked(f *logFile) {
	f.f.Close()
	if err := c.fs.Remove(path.Join(c.logDir, logFileName(f.id))); err != nil {
		c.log.Warn("cache: removing an uploaded log file failed", "file", logFileName(f.id), "err", err)
	}
}

// retireAppliedLocked retires the files, other than the current one,
// whose records are all applied.
func (c *Cache) retireAppliedLocked() {
	for len(c.mu.files) > 0 {
		f := c.mu.files[0]
		if f == c.mu.cur || f.lastSeq > c.mu.applied {
			return
		}
		c.retireFileLocked(f)
	}
}

// persistApplied writes the applied mark (no sync: see the top of this file).
func (c *Cache) persistApplied(seq uint64) {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[0:], seq)
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b[0:8], crcTable))
	binary.LittleEndian.PutUint32(b[12:], appliedMagic)
	if _, err := c.appliedFile.WriteAt(b[:], 0); err != nil {
		c.log.Warn("cache: writing the applied mark failed; the next open re-applies more of the log", "err", err)
	}
}

// readApplied reads the applied mark; a missing or damaged one is 0.
func readApplied(f File) uint64 {
	var b [16]byte
	if n, _ := f.ReadAt(b[:], 0); n < len(b) {
		return 0
	}
	if binary.LittleEndian.Uint32(b[12:]) != appliedMagic ||
		binary.LittleEndian.Uint32(b[8:]) != crc32.Checksum(b[0:8], crcTable) {
		return 0
	}
	return binary.LittleEndian.Uint64(b[0:])
}

// replay reads the log at Open: it checks every record, truncates a torn
// tail of the newest file, queues the records not yet applied and
// deletes the files that hold none.
func (c *Cache) replay() error {
	names, err := c.fs.ReadDir(c.logDir)
	if err != nil {
		return err
	}
	var ids []uint64
	for _, n := range names {
		hex, ok := strings.CutSuffix(n, logSuffix)
		if !ok || len(hex) != 16 {
			continue
		}
		id, err := strconv.ParseUint(hex, 16, 64)
		if err != nil || id == 0 {
			continue
		}
		ids = append(ids, id)
	}
	applied := c.mu.applied
	var prev uint64 // seq of the previous record
	var tornBytes int64
	for i, id := range ids {
		last := i == len(ids)-1
		name := path.Join(c.logDir, logFileName(id))
		f, err := c.fs.Open(name)
		if err != nil {
			return err
		}
		lf := &logFile{id: id, f: f}
		size, err := f.Size()
		if err != nil {
			f.Close()
			return err
		}
		end, recs, rerr := c.scanFile(lf, size, prev)
		if rerr != nil {
			if !last || !errors.Is(rerr, backend.ErrCorrupt) || errors.Is(rerr, errSeqGap) {
				f.Close()
				return fmt.Errorf("cache: log file %s at offset %d: %w", logFileName(id), end, rerr)
			}
			// The torn tail of the newest file: records that were never
			// acknowledged. Cut it off.
			tornBytes = size - end
			if err := f.Truncate(end); err != nil {
				f.Close()
				return err
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return err
			}
			c.log.Warn("cache: dropped the torn tail of the log (writes in flight at a crash)",
				"file", logFileName(id), "offset", end, "bytes", tornBytes, "err", rerr)
		}
		lf.size = end
		if len(recs) > 0 {
			lf.lastSeq = recs[len(recs)-1].seq
			prev = lf.lastSeq
		}
		c.mu.files = append(c.mu.files, lf)
		c.mu.usedBytes += lf.size
		for _, r := range recs {
			if r.seq <= applied {
				continue
			}
			c.mu.queue = append(c.mu.queue, r)
			c.mu.queuedBytes += r.data.n
			c.indexLocked(r)
		}
	}
	c.mu.nextSeq = max(prev, applied) + 1
	c.mu.written = c.mu.nextSeq - 1
	c.sy.durable.Store(c.mu.written)
	// Files holding only applied records (or none) go.
	for _, f := range append([]*logFile(nil), c.mu.files...) {
		if f.lastSeq <= applied {
			c.retireFileLocked(f)
		}
	}
	if len(c.mu.queue) > 0 {
		c.log.Info("cache: resuming uploads from the log", "dir", c.opts.Dir, "records", len(c.mu.queue),
			"bytes", c.mu.queuedBytes, "first_seq", c.mu.queue[0].seq, "last_seq", c.mu.written)
	}
	return nil
}

// scanFile reads and checks the records of one log file. prev is the seq
// of the record before the file (0: any start). It returns where the
// valid records end; an error wrapping backend.ErrCorrupt says a record
// there is torn or damaged.
func (c *Cache) scanFile(lf *logFile, size int64, prev uint64) (int64, []*rec, error) {
	var recs []*rec
	var hdr [recordHeaderLen]byte
	buf := make([]byte, 64<<10)
	off := int64(0)
	for off < size {
		if size-off < recordHeaderLen {
			return off, recs, fmt.Errorf("%w: %d bytes left for a header", errTruncated, size-off)
		}
		if _, err := lf.f.ReadAt(hdr[:], off); err != nil {
			return off, recs, err
		}
		h, err := parseRecordHeader(hdr[:])
		if err != nil {
			return off, recs, err
		}
		total := recordLen(h.nameLen, h.dataLen)
		if total > size-off {
			return off, recs, fmt.Errorf("%w: record of %d bytes, %d left", errTruncated, total, size-off)
		}
		if prev != 0 && h.seq != prev+1 {
			// A torn write cannot make a valid record: this is damage.
			return off, recs, fmt.Errorf("%w: seq %d follows %d", errSeqGap, h.seq, prev)
		}
		name := make([]byte, h.nameLen)
		if _, err := lf.f.ReadAt(name, off+recordHeaderLen); err != nil {
			return off, recs, err
		}
		crc := crc32.Update(0, crcTable, hdr[8:])
		crc = crc32.Update(crc, crcTable, name)
		dataOff := off + recordHeaderLen + int64(h.nameLen)
		for done := int64(0); done < h.dataLen; {
			n := min(int64(len(buf)), h.dataLen-done)
			if _, err := lf.f.ReadAt(buf[:n], dataOff+done); err != nil {
				return off, recs, err
			}
			crc = crc32.Update(crc, crcTable, buf[:n])
			done += n
		}
		if crc != h.crc {
			return off, recs, fmt.Errorf("%w: seq %d: checksum mismatch", errBadRecord, h.seq)
		}
		n := string(name)
		if err := backend.ValidName(n); err != nil {
			return off, recs, fmt.Errorf("%w: seq %d: %w", errBadRecord, h.seq, err)
		}
		recs = append(recs, &rec{seq: h.seq, kind: h.kind, name: n, off: h.off, unixNano: h.unixNano,
			data: span{file: lf, off: dataOff, n: h.dataLen}})
		prev = h.seq
		off += total
	}
	return off, recs, nil
}
