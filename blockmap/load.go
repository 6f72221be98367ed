package blockmap

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockmap/format"
)

// load reads the committed state and replays the journal (open).
func (v *Volume) load(ctx context.Context) error {
	var ck *format.Checkpoint
	if v.snap != "" {
		rec, err := readSnapshot(ctx, v.store, v.name, v.snap)
		if err != nil {
			return err
		}
		if rec.ID != v.sb.ID {
			return corruptf(format.SnapshotName(v.name, v.snap), -1, "snapshot of another volume")
		}
		ck = &rec.Checkpoint
	} else {
		var gens []uint64
		prefix := format.CheckpointPrefix(v.name)
		err := v.store.List(ctx, prefix, func(oi backend.ObjectInfo) error {
			if g, ok := format.ParseNumbered(prefix, oi.Name); ok {
				gens = append(gens, g)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("blockmap: open %s: %w", v.name, err)
		}
		if len(gens) == 0 {
			return objErr(prefix, -1, fmt.Errorf("%w: %w", errNoCheckpoint, blockdev.ErrCorrupt))
		}
		slices.Sort(gens)
		top := gens[len(gens)-1]
		name := format.CheckpointName(v.name, top)
		b, err := readObject(ctx, v.store, name, format.MaxCheckpointLen)
		if err != nil {
			return fmt.Errorf("blockmap: open %s: %w", v.name, err)
		}
		// The newest root is authoritative: an older one may reference
		// segments already deleted, so a bad newest root is never skipped.
		if ck, err = format.DecodeCheckpoint(b); err != nil {
			return objErr(name, -1, err)
		}
		if ck.Gen != top {
			return corruptf(name, -1, "holds generation %d", ck.Gen)
		}
		v.mu.oldCkpts = gens[:len(gens)-1]
	}
	if ck.ID != v.sb.ID {
		return corruptf(format.CheckpointName(v.name, ck.Gen), -1, "belongs to another volume")
	}
	if ck.Root.Layer >= uint8(len(v.layerIDs)) {
		return corruptf(format.CheckpointName(v.name, ck.Gen), -1, "root in layer %d beyond the ancestry", ck.Root.Layer)
	}
	if ck.SizeBytes%uint64(v.bs) != 0 || ck.SizeBytes/uint64(v.bs) > format.MaxLBA {
		return corruptf(format.CheckpointName(v.name, ck.Gen), -1, "size %d", ck.SizeBytes)
	}
	v.mu.base = baseTree{root: ck.Root, height: ck.Height}
	v.mu.sizeBytes = int64(ck.SizeBytes)
	v.mu.gen = ck.Gen
	v.mu.replaySeq = ck.ReplaySeq
	v.mu.nextSeq = ck.NextSeq
	v.mu.lifetimeGuest = int64(ck.GuestBytesWritten)
	v.mu.lifetimeBackend = int64(ck.BackendBytesWritten)
	for _, u := range ck.Usage {
		v.mu.segs[u.Seq] = &segMeta{live: int64(u.LiveBytes), flags: u.Flags}
		v.mu.liveTotal += int64(u.LiveBytes)
	}
	hdr := *ck
	hdr.Usage = nil
	v.mu.ck = hdr
	if v.snap != "" {
		// A snapshot is frozen: no journal, no pins to track.
		return nil
	}
	if err := v.loadSnapshots(ctx); err != nil {
		return err
	}
	return v.loadSegments(ctx)
}

// readSnapshot reads and decodes one snapshot record.
func readSnapshot(ctx context.Context, store backend.Store, vol, snap string) (*format.Snapshot, error) {
	name := format.SnapshotName(vol, snap)
	b, err := readObject(ctx, store, name, format.MaxCheckpointLen+1024)
	if errors.Is(err, backend.ErrNotFound) {
		return nil, fmt.Errorf("blockmap: snapshot %s@%s: %w", vol, snap, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	rec, err := format.DecodeSnapshot(b)
	if err != nil {
		return nil, objErr(name, -1, err)
	}
	if rec.Name != snap {
		return nil, corruptf(name, -1, "names snapshot %q", rec.Name)
	}
	return rec, nil
}

// loadSnapshots reads every snapshot record and pins what they reference.
func (v *Volume) loadSnapshots(ctx context.Context) error {
	prefix := format.SnapshotPrefix(v.name)
	var names []string
	if err := v.store.List(ctx, prefix, func(oi backend.ObjectInfo) error {
		names = append(names, oi.Name[len(prefix):])
		return nil
	}); err != nil {
		return fmt.Errorf("blockmap: open %s: %w", v.name, err)
	}
	for _, n := range names {
		if format.ValidName(n) != nil {
			continue
		}
		rec, err := readSnapshot(ctx, v.store, v.name, n)
		if err != nil {
			return err
		}
		if rec.ID != v.sb.ID {
			return corruptf(format.SnapshotName(v.name, n), -1, "snapshot of another volume")
		}
		v.addSnapshotLocked(rec)
	}
	return nil
}

// addSnapshotLocked records a snapshot and pins its segments.
func (v *Volume) addSnapshotLocked(rec *format.Snapshot) {
	v.mu.snaps[rec.Name] = &snapInfo{
		name: rec.Name, created: time.Unix(0, rec.CreatedUnixNano),
		gen: rec.Checkpoint.Gen, sizeBytes: int64(rec.Checkpoint.SizeBytes),
	}
	for _, u := range rec.Checkpoint.Usage {
		if u.LiveBytes == 0 {
			continue
		}
		s := v.mu.segs[u.Seq]
		if s == nil {
			s = &segMeta{}
			v.mu.segs[u.Seq] = s
		}
		s.pins++
	}
}

// loadSegments lists the segments, then replays those at or after the
// replay point in order.
func (v *Volume) loadSegments(ctx context.Context) error {
	prefix := format.SegmentPrefix(v.name)
	type seg struct {
		seq  uint64
		size int64
	}
	var journal []seg
	listed := make(map[uint64]bool)
	maxSeq := int64(-1)
	err := v.store.List(ctx, prefix, func(oi backend.ObjectInfo) error {
		seq, ok := format.ParseNumbered(prefix, oi.Name)
		if !ok {
			return nil
		}
		listed[seq] = true
		maxSeq = max(maxSeq, int64(seq))
		s := v.mu.segs[seq]
		if s == nil {
			s = &segMeta{}
			v.mu.segs[seq] = s
		}
		s.size = oi.Size
		if seq >= v.mu.replaySeq {
			journal = append(journal, seg{seq, oi.Size})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("blockmap: open %s: %w", v.name, err)
	}
	for seq, s := range v.mu.segs {
		if !listed[seq] && (s.live > 0 || s.pins > 0) {
			v.log.Error("blockmap: referenced segment is missing", "volume", v.name, "segment", format.SegmentName(v.name, seq))
		}
	}
	if maxSeq >= 0 {
		v.mu.nextSeq = max(v.mu.nextSeq, uint64(maxSeq)+1)
	}
	for _, s := range journal {
		if err := v.replaySegment(ctx, s.seq, s.size); err != nil {
			return err
		}
	}
	return nil
}

// parsedRecord is one valid record of a segment.
type parsedRecord struct {
	off     int
	hdr     *format.RecordHeader
	payload []byte
}

// parseSegment returns the valid prefix of records of segment b (the
// whole object) and where it ends. A record that fails validation ends
// the prefix: it is the torn tail of an interrupted append (or damage,
// which Check reports).
func parseSegment(b []byte, id [16]byte, seq uint64, blockSize uint32) ([]parsedRecord, int, error) {
	var recs []parsedRecord
	off := 0
	for off+format.RecordFixedLen <= len(b) {
		hl, err := format.PeekRecordHeaderLen(b[off:])
		if err != nil {
			return recs, off, err
		}
		if off+hl > len(b) {
			return recs, off, &format.CorruptError{What: "record header", Reason: "truncated"}
		}
		h, err := format.DecodeRecordHeader(b[off:off+hl], blockSize)
		if err != nil {
			return recs, off, err
		}
		if h.ID != id || h.Seq != seq || int(h.Offset) != off {
			return recs, off, &format.CorruptError{What: "record header", Reason: "belongs to another volume, segment or offset"}
		}
		end := off + hl + int(h.PayloadLen)
		if end > len(b) {
			return recs, off, &format.CorruptError{What: "record payload", Reason: "truncated"}
		}
		payload := b[off+hl : end]
		if err := format.CheckPayload(h, payload); err != nil {
			return recs, off, err
		}
		recs = append(recs, parsedRecord{off: off, hdr: h, payload: payload})
		off = end
	}
	return recs, off, nil
}

// readSegment reads a whole segment object.
func (v *Volume) readSegment(ctx context.Context, layer uint8, seq uint64, size int64) ([]byte, error) {
	name := v.segObject(layer, seq)
	if size < 0 || size > format.MaxObjectSize {
		return nil, corruptf(name, -1, "size %d", size)
	}
	b := make([]byte, size)
	n, err := v.store.ReadAt(ctx, name, b, 0)
	v.stats.backendReadOps.Add(1)
	v.stats.backendReadBytes.Add(int64(n))
	if err != nil && n < len(b) {
		return nil, objErr(name, 0, err)
	}
	return b, nil
}

// replaySegment applies the records of a journal segment to the delta.
func (v *Volume) replaySegment(ctx context.Context, seq uint64, size int64) error {
	b, err := v.readSegment(ctx, 0, seq, size)
	if err != nil {
		return err
	}
	recs, end, perr := parseSegment(b, v.sb.ID, seq, v.bs)
	if perr != nil && end < len(b) {
		v.log.Debug("blockmap: segment ends in an incomplete record", "volume", v.name, "seq", seq, "offset", end, "err", perr)
	}
	s := v.mu.segs[seq]
	s.size = size
	v.mu.journalBytes += size
	if len(recs) > 0 {
		s.kind = recs[0].hdr.Kind
	}
	for _, r := range recs {
		if r.hdr.Kind == format.RecordMeta {
			continue
		}
		dataOff := uint64(r.off) + uint64(r.hdr.HeaderLen)
		for _, e := range r.hdr.Entries {
			if err := v.replayEntry(ctx, seq, e, dataOff); err != nil {
				return err
			}
			dataOff += e.PayloadBytes(v.bs)
		}
	}
	return nil
}

// replayEntry applies one journal entry, clipped to the volume size.
func (v *Volume) replayEntry(ctx context.Context, seq uint64, e format.Entry, dataOff uint64) error {
	blocks := uint64(v.mu.sizeBytes) / uint64(v.bs)
	if e.LBA >= blocks {
		return nil
	}
	n := min(uint64(e.Count), blocks-e.LBA)
	switch e.Kind {
	case format.EntryWrite:
		v.mu.active.set(e.LBA, n, false, loc{seq: seq, off: uint32(dataOff)})
	case format.EntryUnmap:
		v.mu.active.set(e.LBA, n, true, loc{})
	case format.EntryRef:
		if int(e.Layer) >= len(v.layerIDs) {
			return corruptf(format.SegmentName(v.name, seq), int64(dataOff), "ref entry to layer %d beyond the ancestry", e.Layer)
		}
		v.mu.active.set(e.LBA, n, false, loc{seq: e.SrcSeq, off: e.SrcOff, layer: e.Layer})
		if e.Layer == 0 {
			if s := v.mu.segs[e.SrcSeq]; s != nil {
				s.flags |= format.UsageShared
			}
		}
	case format.EntryMove:
		// Conditional: only blocks still mapped to the source move.
		cur := v.deltaResolveLocked(e.LBA, n)
		full, err := v.fillGaps(ctx, v.mu.base, cur)
		if err != nil {
			return err
		}
		src := loc{seq: e.SrcSeq, off: e.SrcOff}
		for _, p := range movable(full, e.LBA, src, v.bs) {
			v.mu.active.set(p.start, p.n, false, loc{seq: seq, off: uint32(dataOff + (p.start-e.LBA)*uint64(v.bs))})
		}
	}
	return nil
}

// fillGaps resolves the gaps of delta pieces from the committed tree.
func (v *Volume) fillGaps(ctx context.Context, t baseTree, pieces []piece) ([]piece, error) {
	if !hasGap(pieces) {
		return pieces, nil
	}
	var out []piece
	for _, p := range pieces {
		if p.kind != pieceGap {
			out = appendPiece(out, p, v.bs)
			continue
		}
		var err error
		if out, err = v.baseResolve(ctx, t, p.start, p.n, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// movable returns the runs of pieces (resolving [lba, ...)) that map
// block for block to the data at src (layer 0) for an entry starting at
// lba.
func movable(pieces []piece, lba uint64, src loc, blockSize uint32) []piece {
	var out []piece
	for _, p := range pieces {
		if p.kind != pieceData || p.loc.layer != 0 || p.loc.seq != src.seq {
			continue
		}
		want := src.advance(p.start-lba, blockSize)
		if p.loc.off == want.off {
			out = append(out, p)
		}
	}
	return out
}
