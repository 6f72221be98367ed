package blockmap

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockmap/format"
)

// GCResult reports one garbage-collection pass.
type GCResult struct {
	// Segments is how many segments were compacted (their live data
	// moved, their live map pages marked for rewriting).
	Segments int
	// BytesMoved is the live data rewritten.
	BytesMoved int64
	// SegmentsFreed and BytesFreed count deletions by the reclaim that
	// follows the pass.
	SegmentsFreed int64
	BytesFreed    int64
}

// collector runs garbage collection in the background every
// GCInterval, rate-limited. Under space pressure (stored bytes above
// twice the live bytes) it runs pass after pass without the limit until
// the pressure is gone: space then takes priority over guest I/O.
func (v *Volume) collector(ctx context.Context) {
	defer v.bg.wg.Done()
	t := time.NewTicker(v.opts.GCInterval)
	defer t.Stop()
	pressure := false
	for {
		if !pressure {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-v.bg.gcKick:
			}
		} else if ctx.Err() != nil {
			return
		}
		// Liveness of segments overwritten since the last checkpoint is
		// only known after the next; take one when much was written.
		v.mu.RLock()
		stale := v.mu.journalBytes >= 8*int64(v.segSize)
		v.mu.RUnlock()
		if stale {
			if err := v.checkpoint(ctx, false); err != nil {
				if ctx.Err() == nil {
					v.log.Warn("blockmap: checkpoint before GC failed", "volume", v.name, "err", err)
				}
				continue
			}
		}
		res, err := v.gcPass(ctx, v.opts.GCThreshold, 256<<20, pressure)
		if err != nil && ctx.Err() == nil {
			v.log.Warn("blockmap: garbage collection failed", "volume", v.name, "err", err)
		}
		if res.Segments > 0 || res.SegmentsFreed > 0 {
			v.log.Debug("blockmap: GC pass", "volume", v.name, "compacted", res.Segments, "moved", res.BytesMoved,
				"freed", res.SegmentsFreed, "freedBytes", res.BytesFreed, "pressure", pressure)
		}
		was := pressure
		pressure = err == nil && res.Segments > 0 && v.spacePressure()
		if pressure != was {
			v.log.Debug("blockmap: GC space pressure", "volume", v.name, "on", pressure)
		}
	}
}

// spacePressure reports whether the volume stores more than twice its
// live bytes (plus some slack for open and journal segments).
func (v *Volume) spacePressure() bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var stored int64
	for _, s := range v.mu.segs {
		stored += s.size
	}
	return stored > 2*v.mu.liveTotal+16*int64(v.segSize)
}

// GC runs one garbage-collection pass now: it compacts the segments
// whose live fraction is below threshold (0 means the configured
// GCThreshold), commits a checkpoint and deletes what is no longer
// referenced. It is rate-limited like the background collector.
func (v *Volume) GC(ctx context.Context, threshold float64) (GCResult, error) {
	if v.readOnly {
		return GCResult{}, nil
	}
	if threshold <= 0 {
		threshold = v.opts.GCThreshold
	}
	// Liveness is exact as of a checkpoint: take one first.
	if err := v.checkpoint(ctx, false); err != nil {
		return GCResult{}, err
	}
	return v.gcPass(ctx, threshold, 0, false)
}

// gcPass compacts candidates (at most maxRead bytes of them; 0: no
// limit), then checkpoints and reclaims.
func (v *Volume) gcPass(ctx context.Context, threshold float64, maxRead int64, unthrottled bool) (res GCResult, err error) {
	v.gcMu.Lock()
	defer v.gcMu.Unlock()
	freedSegs, freedBytes := v.stats.segmentsFreed.Load(), v.stats.bytesFreed.Load()
	defer func() {
		res.SegmentsFreed = v.stats.segmentsFreed.Load() - freedSegs
		res.BytesFreed = v.stats.bytesFreed.Load() - freedBytes
	}()
	v.stats.gcRuns.Add(1)

	type cand struct {
		seq  uint64
		size int64
		frac float64
	}
	var cands []cand
	v.mu.RLock()
	if v.mu.closed {
		v.mu.RUnlock()
		return res, nil
	}
	deltas := append([]*delta{v.mu.active}, v.mu.frozen...)
	for seq, s := range v.mu.segs {
		if s.open || s.pins > 0 || s.flags&format.UsageShared != 0 || v.mu.mem[seq] != nil || s.size <= 0 {
			continue
		}
		live := s.live
		for _, d := range deltas {
			live += d.added[seq]
		}
		if live <= 0 {
			continue // wholly dead: reclaim deletes it after the next checkpoint
		}
		frac := float64(live) / float64(s.size)
		if frac < threshold {
			cands = append(cands, cand{seq, s.size, frac})
		}
	}
	v.mu.RUnlock()
	slices.SortFunc(cands, func(a, b cand) int {
		switch {
		case a.frac < b.frac:
			return -1
		case a.frac > b.frac:
			return 1
		}
		return 0
	})

	var read int64
	for _, c := range cands {
		if maxRead > 0 && read >= maxRead {
			break
		}
		moved, err := v.compact(ctx, c.seq, c.size, unthrottled)
		if err != nil {
			return res, err
		}
		read += c.size
		res.Segments++
		res.BytesMoved += moved
		v.stats.gcSegments.Add(1)
	}
	if res.Segments == 0 {
		// Nothing to compact; still delete what earlier passes freed.
		return res, v.reclaim(ctx)
	}
	if err := v.checkpoint(ctx, false); err != nil {
		return res, err
	}
	return res, v.reclaim(ctx)
}

// throttle waits for the GC rate limiter to allow n bytes.
func (v *Volume) throttle(ctx context.Context, n int64) error {
	burst := int64(v.limiter.Burst())
	for n > 0 {
		k := min(n, burst)
		if err := v.limiter.WaitN(ctx, int(k)); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// compact moves the live data out of segment seq and marks its live map
// pages for rewriting; the next checkpoint then leaves it unreferenced.
func (v *Volume) compact(ctx context.Context, seq uint64, size int64, unthrottled bool) (int64, error) {
	if !unthrottled {
		if err := v.throttle(ctx, size); err != nil {
			return 0, err
		}
	}
	// Hold the current view: a checkpoint may free this segment while we
	// read it, and reclaim then waits for us.
	v.mu.RLock()
	view := v.mu.view
	view.refs.Add(1)
	_, known := v.mu.segs[seq]
	v.mu.RUnlock()
	defer view.release()
	if !known {
		return 0, nil // freed since it was picked
	}
	b, err := v.readSegment(ctx, 0, seq, size)
	if err != nil {
		return 0, err
	}
	recs, _, _ := parseSegment(b, v.sb.ID, seq, v.bs)
	var moved int64
	for _, r := range recs {
		dataOff := uint64(r.off) + uint64(r.hdr.HeaderLen)
		rel := uint64(0) // offset in r.payload
		for _, e := range r.hdr.Entries {
			payload := e.PayloadBytes(v.bs)
			switch e.Kind {
			case format.EntryWrite, format.EntryMove:
				n, err := v.moveLive(ctx, e.LBA, uint64(e.Count), loc{seq: seq, off: uint32(dataOff)}, r.payload[rel:rel+payload])
				if err != nil {
					return moved, err
				}
				moved += n
			case format.EntryPage:
				if err := v.markPage(ctx, uint8(e.Level), e.LBA, loc{seq: seq, off: uint32(dataOff)}); err != nil {
					return moved, err
				}
			}
			dataOff += payload
			rel += payload
		}
	}
	return moved, nil
}

// moveLive rewrites the blocks of one entry that still map to src
// through the GC stream, as conditional moves.
func (v *Volume) moveLive(ctx context.Context, lba, n uint64, src loc, data []byte) (int64, error) {
	r, err := v.resolve(ctx, lba, n)
	if err != nil {
		return 0, err
	}
	defer r.release()
	if len(movable(r.pieces, lba, src, v.bs)) == 0 {
		return 0, nil
	}
	bs := uint64(v.bs)
	var moved int64
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.mu.closed {
		return 0, nil
	}
	// GC may exceed the dirty bound by a few segments: it must not starve
	// behind guest writes that keep the bound full, or space would grow
	// without limit under sustained overwrites.
	if err := v.waitGCRoomLocked(ctx, int64(len(data))); err != nil {
		return 0, err
	}
	// Re-check under the lock: the deltas now, the base as resolved if
	// no checkpoint switched it since.
	cur := v.deltaResolveLocked(lba, n)
	var full []piece
	for _, p := range cur {
		if p.kind != pieceGap {
			full = append(full, p)
			continue
		}
		if v.mu.baseGen != r.gen {
			continue // unknown now: leave it for the next pass
		}
		full = append(full, clip(r.pieces, p.start, p.start+p.n, v.bs)...)
	}
	for _, p := range movable(full, lba, src, v.bs) {
		rel := (p.start - lba) * bs
		v.writeBlocksLocked(format.RecordGC, format.EntryMove, p.start, data[rel:rel+p.n*bs], src.advance(p.start-lba, v.bs), v.mu.active.setData)
		moved += int64(p.n * bs)
	}
	if moved > 0 {
		v.noteChangeLocked()
		v.stats.gcBytesMoved.Add(moved)
	}
	return moved, nil
}

// clip returns the parts of pieces within [lo, hi).
func clip(pieces []piece, lo, hi uint64, blockSize uint32) []piece {
	var out []piece
	for _, p := range pieces {
		s, e := max(p.start, lo), min(p.start+p.n, hi)
		if s >= e {
			continue
		}
		q := p
		q.start, q.n = s, e-s
		if p.kind == pieceData {
			q.loc = p.loc.advance(s-p.start, blockSize)
		}
		out = append(out, q)
	}
	return out
}

// markPage marks the tree node (level, index) for rewriting at the next
// checkpoint if the committed tree still references the page at at.
func (v *Volume) markPage(ctx context.Context, level uint8, index uint64, at loc) error {
	v.mu.RLock()
	base := v.mu.base
	view := v.mu.view // pins the pages of base while we descend
	view.refs.Add(1)
	v.mu.RUnlock()
	defer view.release()
	ref, ok, err := v.nodeRef(ctx, base, level, index)
	if err != nil || !ok {
		return err
	}
	if ref.Layer == 0 && ref.Seq == at.seq && ref.Off == at.off {
		v.mu.Lock()
		v.mu.forced[nodeKey{level, index}] = true
		v.mu.Unlock()
		v.stats.gcPagesMarked.Add(1)
	}
	return nil
}

// waitGCRoomLocked waits until dataBytes more GC data fit in the dirty
// bound plus an allowance of four segments (the map delta bound applies
// as to guest writes).
func (v *Volume) waitGCRoomLocked(ctx context.Context, dataBytes int64) error {
	for {
		deltaSize := v.mu.active.size()
		for _, f := range v.mu.frozen {
			deltaSize += f.size()
		}
		limit := v.opts.MaxDirtyBytes + 4*int64(v.segSize)
		if v.mu.dirtyBytes+dataBytes <= limit && deltaSize < v.opts.MaxDeltaExtents {
			return nil
		}
		if deltaSize >= v.opts.MaxDeltaExtents {
			v.kickCheckpoint()
		}
		if err := v.mu.ioErr; err != nil {
			return fmt.Errorf("blockmap: %s: store failing: %w", v.name, err)
		}
		if v.mu.closed || v.mu.bgStopped {
			return blockdev.ErrClosed
		}
		if err := v.waitLocked(ctx); err != nil {
			return err
		}
	}
}
