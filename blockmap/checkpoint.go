package blockmap

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/lunway/lunway/blockmap/format"
)

// checkpointer runs checkpoints when kicked (the delta or the journal
// passed its threshold) and when CheckpointInterval has passed since the
// first change after the last one; failures are retried with backoff.
func (v *Volume) checkpointer(ctx context.Context) {
	defer v.bg.wg.Done()
	interval := v.opts.CheckpointInterval
	var tick <-chan time.Time
	if interval > 0 && !v.opts.DisableBackground {
		t := time.NewTicker(max(interval/4, 50*time.Millisecond))
		defer t.Stop()
		tick = t.C
	}
	var retry <-chan time.Time
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-v.bg.kick:
		case <-retry:
		case <-tick:
			v.mu.RLock()
			due := !v.mu.firstChange.IsZero() && time.Since(v.mu.firstChange) >= interval
			v.mu.RUnlock()
			if !due {
				continue
			}
		}
		retry = nil
		err := v.checkpoint(ctx, false)
		if err == nil {
			err = v.reclaim(ctx)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			v.log.Warn("blockmap: checkpoint failed; retrying", "volume", v.name, "err", err)
			retry = time.After(backoff)
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
}

// Checkpoint merges every map change so far into new map pages and
// commits a new checkpoint root, so that reopening replays nothing. It
// also makes all data written so far durable.
func (v *Volume) Checkpoint(ctx context.Context) error {
	if err := ctx.Err(); err != nil || v.readOnly {
		return err
	}
	if err := v.checkpoint(ctx, true); err != nil {
		return err
	}
	return v.reclaim(ctx)
}

func (v *Volume) checkpoint(ctx context.Context, force bool) error {
	v.ckptMu.Lock()
	defer v.ckptMu.Unlock()
	return v.checkpointLocked(ctx, force, -1)
}

// checkpointLocked runs one checkpoint; ckptMu is held. size >= 0
// commits that volume size (Resize); the in-memory size follows on
// success.
func (v *Volume) checkpointLocked(ctx context.Context, force bool, size int64) error {
	// 1. Rotate: freeze the active delta and seal the open segments, so
	// that everything the frozen deltas reference lies below seq R.
	v.mu.Lock()
	if !v.mu.active.empty() {
		v.mu.frozen = append(v.mu.frozen, v.mu.active)
		v.mu.active = newDelta(v.leafShift, v.bs)
	}
	v.sealLocked(format.RecordData)
	v.sealLocked(format.RecordGC)
	R := v.mu.nextSeq
	frozen := slices.Clone(v.mu.frozen)
	forced := maps.Clone(v.mu.forced)
	base := v.mu.base
	if size < 0 {
		size = v.mu.sizeBytes
	}
	journal := v.mu.journalBytes
	v.mu.journalBytes = 0
	v.mu.firstChange = time.Time{}
	committed := v.mu.ck
	v.mu.Unlock()

	height := max(base.height, heightFor(v.sb, uint64(size)))
	if !force && len(frozen) == 0 && len(forced) == 0 && uint64(size) == committed.SizeBytes && height == base.height {
		return nil
	}
	fail := func(err error) error {
		v.mu.Lock()
		v.mu.journalBytes += journal
		if v.mu.firstChange.IsZero() {
			v.mu.firstChange = time.Now()
		}
		v.mu.Unlock()
		return err
	}

	// 2. Everything below R must be durable before a root refers to it.
	if err := v.waitSealed(ctx, R, 0); err != nil {
		return fail(err)
	}

	// 3. Merge the frozen deltas into new pages.
	m := newMerger(ctx, v, frozen, forced)
	root, err := m.run(base, height)
	if err == nil {
		err = m.mw.finish(ctx)
	}
	if err != nil {
		return fail(err)
	}

	// 4. Commit the root.
	v.mu.RLock()
	ck := format.Checkpoint{
		ID:                  v.sb.ID,
		Gen:                 committed.Gen + 1,
		SizeBytes:           uint64(size),
		ReplaySeq:           R,
		NextSeq:             v.mu.nextSeq,
		Height:              height,
		Root:                root,
		GuestBytesWritten:   uint64(v.mu.lifetimeGuest + v.stats.guestWriteBytes.Load()),
		BackendBytesWritten: uint64(v.mu.lifetimeBackend + v.stats.backendWriteBytes.Load()),
		Usage:               v.usageRowsLocked(m.adj, v.mu.nextSeq),
	}
	v.mu.RUnlock()
	sortUsage(ck.Usage)
	name := format.CheckpointName(v.name, ck.Gen)
	enc := format.AppendCheckpoint(nil, &ck)
	if err := v.store.Put(ctx, name, enc); err != nil {
		return fail(objErr(name, -1, err))
	}
	v.stats.backendWriteOps.Add(1)
	v.stats.backendWriteBytes.Add(int64(len(enc)))
	v.stats.checkpoints.Add(1)

	// 5. Install: readers switch to the new tree; the old view retires.
	v.mu.Lock()
	for seq, d := range m.adj {
		s := v.mu.segs[seq]
		if s == nil {
			s = &segMeta{}
			v.mu.segs[seq] = s
		}
		s.live += d
		v.mu.liveTotal += d
	}
	for _, mseg := range m.mw.written {
		if s := v.mu.segs[mseg.seq]; s != nil {
			s.size = mseg.size
		}
	}
	v.mu.base = baseTree{root: root, height: height}
	v.mu.baseGen++
	v.mu.frozen = v.mu.frozen[len(frozen):]
	v.mu.replaySeq = R
	v.mu.oldCkpts = append(v.mu.oldCkpts, committed.Gen)
	v.mu.gen = ck.Gen
	ck.Usage = nil
	v.mu.ck = ck
	v.mu.sizeBytes = size
	for k := range forced {
		delete(v.mu.forced, k)
	}
	old := v.mu.view
	v.mu.view = newView()
	old.retire()
	v.mu.retired = append(v.mu.retired, old)
	v.signalLocked()
	v.mu.Unlock()
	return nil
}

// usageRowsLocked is the usage table of a checkpoint: committed live
// bytes plus the merge's adjustments, for segments below next seq.
func (v *Volume) usageRowsLocked(adj map[uint64]int64, limit uint64) []format.SegUsage {
	rows := make([]format.SegUsage, 0, len(v.mu.segs))
	for seq, s := range v.mu.segs {
		live := s.live + adj[seq]
		if seq < limit && (live > 0 || s.flags != 0) {
			rows = append(rows, format.SegUsage{Seq: seq, LiveBytes: uint64(max(live, 0)), Flags: s.flags})
		}
	}
	for seq, d := range adj {
		if _, ok := v.mu.segs[seq]; !ok && d > 0 && seq < limit {
			rows = append(rows, format.SegUsage{Seq: seq, LiveBytes: uint64(d)})
		}
	}
	return rows // unsorted: sortUsage, after the lock is released
}

func sortUsage(rows []format.SegUsage) {
	slices.SortFunc(rows, func(a, b format.SegUsage) int { return cmp.Compare(a.Seq, b.Seq) })
}

// reclaim deletes old checkpoint roots and the segments nothing
// references any more: below the committed replay point, no live bytes,
// no snapshot pin, not referenced from the in-memory deltas. It first
// waits for readers of retired views, which may still read them.
func (v *Volume) reclaim(ctx context.Context) error {
	v.reclaimMu.Lock()
	defer v.reclaimMu.Unlock()
	v.mu.Lock()
	type dead struct {
		seq  uint64
		size int64
	}
	var segs []dead
	for seq, s := range v.mu.segs {
		if seq < v.mu.replaySeq && s.live <= 0 && s.pins == 0 && !s.open && v.mu.mem[seq] == nil && !v.referencedByDeltaLocked(seq) {
			segs = append(segs, dead{seq, s.size})
		}
	}
	for _, d := range segs {
		delete(v.mu.segs, d.seq)
	}
	ckpts := v.mu.oldCkpts
	v.mu.oldCkpts = nil
	views := slices.Clone(v.mu.retired)
	v.mu.Unlock()

	restore := func(from int, err error) error {
		v.mu.Lock()
		for _, d := range segs[from:] {
			if _, ok := v.mu.segs[d.seq]; !ok {
				v.mu.segs[d.seq] = &segMeta{size: d.size}
			}
		}
		v.mu.oldCkpts = append(v.mu.oldCkpts, ckpts...)
		v.mu.Unlock()
		return err
	}
	for _, w := range views {
		select {
		case <-w.done:
		case <-ctx.Done():
			return restore(0, ctx.Err())
		}
	}
	v.mu.Lock()
	v.mu.retired = slices.DeleteFunc(v.mu.retired, func(w *view) bool { return slices.Contains(views, w) })
	v.mu.Unlock()

	for i, d := range segs {
		if err := v.store.Delete(ctx, format.SegmentName(v.name, d.seq)); err != nil {
			return restore(i, objErr(format.SegmentName(v.name, d.seq), -1, err))
		}
		v.stats.backendDeletes.Add(1)
		v.stats.segmentsFreed.Add(1)
		v.stats.bytesFreed.Add(d.size)
	}
	segs = nil
	for i, g := range ckpts {
		if err := v.store.Delete(ctx, format.CheckpointName(v.name, g)); err != nil {
			ckpts = ckpts[i:]
			return restore(0, err)
		}
		v.stats.backendDeletes.Add(1)
	}
	return nil
}

// referencedByDeltaLocked reports whether an in-memory delta maps blocks
// to segment seq (of this volume).
func (v *Volume) referencedByDeltaLocked(seq uint64) bool {
	if v.mu.active.added[seq] > 0 {
		return true
	}
	for _, f := range v.mu.frozen {
		if f.added[seq] > 0 {
			return true
		}
	}
	return false
}

// merger builds a new tree from the committed one and frozen deltas,
// rewriting only the subtrees the deltas touch, and accounts the bytes
// each segment gains or loses.
type merger struct {
	ctx       context.Context
	v         *Volume
	deltas    []*delta // newest first
	dirty     []uint64 // sorted leaf indexes with delta extents
	cleared   rangeSet // leaves wholly deallocated by some delta
	forced    map[nodeKey]bool
	forcedAnc map[nodeKey]bool // forced nodes and all their ancestors
	adj       map[uint64]int64
	mw        *metaWriter
	scratch   []byte
	pre       map[uint64]*cachedPage // prefetched leaves of the level-1 node being merged
}

func newMerger(ctx context.Context, v *Volume, frozen []*delta, forced map[nodeKey]bool) *merger {
	m := &merger{ctx: ctx, v: v, forced: forced, adj: make(map[uint64]int64), mw: &metaWriter{v: v}}
	for i := len(frozen) - 1; i >= 0; i-- {
		d := frozen[i]
		m.deltas = append(m.deltas, d)
		m.dirty = append(m.dirty, d.dirtyLeaves()...)
		for _, r := range d.cleared.r {
			m.cleared.add(r[0], r[1])
		}
	}
	slices.Sort(m.dirty)
	m.dirty = slices.Compact(m.dirty)
	m.forcedAnc = make(map[nodeKey]bool)
	for k := range forced {
		for l, i := k.level, k.index; l <= format.MaxHeight; l, i = l+1, i>>v.fanShift {
			if m.forcedAnc[nodeKey{l, i}] {
				break
			}
			m.forcedAnc[nodeKey{l, i}] = true
		}
	}
	return m
}

// leafRange is the range of leaves under node (level, index).
func (m *merger) leafRange(level uint8, index uint64) (uint64, uint64) {
	sh := uint64(level) * uint64(m.v.fanShift)
	if sh >= 64 || index > (^uint64(0))>>sh {
		return ^uint64(0), ^uint64(0)
	}
	lo := index << sh
	if sh >= 63 || lo > ^uint64(0)-(1<<sh) {
		return lo, ^uint64(0)
	}
	return lo, lo + 1<<sh
}

func (m *merger) dirtyIn(lo, hi uint64) bool {
	i := sort.Search(len(m.dirty), func(k int) bool { return m.dirty[k] >= lo })
	return i < len(m.dirty) && m.dirty[i] < hi
}

// work reports whether node (level, index) must be visited: deltas touch
// its leaves, or a node to rewrite lies in its subtree.
func (m *merger) work(level uint8, index uint64) bool {
	lo, hi := m.leafRange(level, index)
	return m.dirtyIn(lo, hi) || m.cleared.overlaps(lo, hi) || m.forcedAnc[nodeKey{level, index}]
}

// run returns the new root for a tree of the given height.
func (m *merger) run(base baseTree, height uint8) (format.Ref, error) {
	root := base.root
	// Growing: the old root becomes the first child of new levels.
	for l := base.height + 1; l <= height && !root.IsZero(); l++ {
		ref, err := m.writeInterior(&format.Interior{Level: l, Index: 0, Children: []format.Child{{Slot: 0, Ref: root}}})
		if err != nil {
			return format.Ref{}, err
		}
		root = ref
	}
	return m.rewrite(height, 0, root)
}

// rewrite returns the new ref of node (level, index) whose old ref is
// old (absolute layer; zero when the subtree was empty).
func (m *merger) rewrite(level uint8, index uint64, old format.Ref) (format.Ref, error) {
	if err := m.ctx.Err(); err != nil {
		return format.Ref{}, err
	}
	if level == 0 {
		return m.rewriteLeaf(index, old)
	}
	lo, hi := m.leafRange(level, index)
	if !m.work(level, index) {
		return old, nil
	}
	if old.IsZero() && !m.dirtyIn(lo, hi) {
		return old, nil // only deallocations over an empty subtree
	}
	v := m.v
	var page *cachedPage
	if !old.IsZero() {
		var err error
		if page, err = v.loadPage(m.ctx, old, level, index); err != nil {
			return format.Ref{}, err
		}
	}
	changed := m.forced[nodeKey{level, index}]
	fan := uint32(1) << v.fanShift
	if level == 1 && page != nil {
		if err := m.prefetchLeaves(page, old.Layer, index); err != nil {
			return format.Ref{}, err
		}
		defer clear(m.pre)
	}
	var children []format.Child
	for slot := uint32(0); slot < fan; slot++ {
		childIdx := index<<v.fanShift | uint64(slot)
		var oc format.Ref
		if page != nil {
			r, ok, err := v.childRef(page, old.Layer, slot)
			if err != nil {
				return format.Ref{}, err
			}
			if ok {
				oc = r
			}
		}
		nc := oc
		if m.work(level-1, childIdx) {
			var err error
			if nc, err = m.rewrite(level-1, childIdx, oc); err != nil {
				return format.Ref{}, err
			}
		}
		if nc != oc {
			changed = true
		}
		if !nc.IsZero() {
			children = append(children, format.Child{Slot: slot, Ref: nc})
		}
	}
	if !changed {
		return old, nil
	}
	m.dropPage(old)
	if len(children) == 0 {
		return format.Ref{}, nil
	}
	return m.writeInterior(&format.Interior{Level: level, Index: index, Children: children})
}

// prefetchLeaves loads, in parallel, the existing leaves under the
// level-1 node page that the merge will rewrite, so that a slow store's
// latency is paid once per node rather than once per leaf.
func (m *merger) prefetchLeaves(page *cachedPage, layer uint8, index uint64) error {
	v := m.v
	type job struct {
		j   uint64
		ref format.Ref
	}
	var jobs []job
	for _, ch := range page.interior.Children {
		j := index<<v.fanShift | uint64(ch.Slot)
		if !m.dirtyIn(j, j+1) && !m.cleared.contains(j) && !m.forced[nodeKey{0, j}] {
			continue
		}
		r, ok, err := v.childRef(page, layer, ch.Slot)
		if err != nil {
			return err
		}
		if ok {
			jobs = append(jobs, job{j, r})
		}
	}
	if len(jobs) < 2 {
		return nil
	}
	if m.pre == nil {
		m.pre = make(map[uint64]*cachedPage)
	}
	pages := make([]*cachedPage, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, jb := range jobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			pages[i], errs[i] = v.loadPage(m.ctx, jb.ref, 0, jb.j)
		})
	}
	wg.Wait()
	for i, jb := range jobs {
		if errs[i] != nil {
			return errs[i]
		}
		m.pre[jb.j] = pages[i]
	}
	return nil
}

// dropPage accounts an old page that the new tree no longer references.
func (m *merger) dropPage(old format.Ref) {
	if !old.IsZero() && old.Layer == 0 {
		m.adj[old.Seq] -= int64(old.Len)
	}
}

func (m *merger) writeInterior(n *format.Interior) (format.Ref, error) {
	var crc uint32
	m.scratch, crc = format.AppendInterior(m.scratch[:0], n)
	ref, err := m.mw.add(m.ctx, n.Level, n.Index, m.scratch, crc)
	if err != nil {
		return format.Ref{}, err
	}
	m.adj[ref.Seq] += int64(ref.Len)
	m.v.cache.put(&cachedPage{owner: m.v.sb.ID, seq: ref.Seq, off: ref.Off, interior: n})
	return ref, nil
}

// rewriteLeaf overlays the deltas on leaf j.
func (m *merger) rewriteLeaf(j uint64, old format.Ref) (format.Ref, error) {
	v := m.v
	bs := uint64(v.bs)
	span := uint64(1) << v.leafShift
	start := j << v.leafShift
	forced := m.forced[nodeKey{0, j}]
	if !m.dirtyIn(j, j+1) && !m.cleared.contains(j) && !forced {
		return old, nil
	}
	// The deltas' view of the leaf, newest first.
	dp := []piece{{start: start, n: span, kind: pieceGap}}
	for _, d := range m.deltas {
		if !hasGap(dp) {
			break
		}
		dp = overlay(dp, d, nil)
	}
	// The old leaf as pieces covering the whole leaf.
	var op []piece
	if !old.IsZero() {
		page := m.pre[j]
		if page == nil {
			var err error
			if page, err = v.loadPage(m.ctx, old, 0, j); err != nil {
				return format.Ref{}, err
			}
		}
		next := start
		for _, e := range page.leaf.Extents {
			es := start + uint64(e.Start)
			if es > next {
				op = append(op, piece{start: next, n: es - next, kind: pieceZero})
			}
			layer := int(old.Layer) + int(e.Layer)
			if layer >= len(v.layerIDs) {
				return format.Ref{}, corruptf(v.segObject(old.Layer, old.Seq), int64(old.Off), "leaf %d: extent in layer %d beyond the ancestry", j, layer)
			}
			op = append(op, piece{start: es, n: uint64(e.Count), kind: pieceData, loc: loc{seq: e.Seq, off: e.Off, layer: uint8(layer)}})
			next = es + uint64(e.Count)
		}
		if next < start+span {
			op = append(op, piece{start: next, n: start + span - next, kind: pieceZero})
		}
	} else {
		op = []piece{{start: start, n: span, kind: pieceZero}}
	}

	adj := make(map[uint64]int64)
	var final []piece
	oi := 0
	for _, d := range dp {
		// Old pieces overlapping [d.start, d.end).
		dEnd := d.start + d.n
		for oi < len(op) && op[oi].start+op[oi].n <= d.start {
			oi++
		}
		for k := oi; k < len(op) && op[k].start < dEnd; k++ {
			o := op[k]
			s := max(o.start, d.start)
			e := min(o.start+o.n, dEnd)
			if d.kind == pieceGap {
				sub := o
				sub.start, sub.n = s, e-s
				if o.kind == pieceData {
					sub.loc = o.loc.advance(s-o.start, v.bs)
				}
				final = appendPiece(final, sub, v.bs)
			} else if o.kind == pieceData && o.loc.layer == 0 {
				adj[o.loc.seq] -= int64((e - s) * bs)
			}
		}
		if d.kind != pieceGap {
			final = appendPiece(final, d, v.bs)
			if d.kind == pieceData && d.loc.layer == 0 {
				adj[d.loc.seq] += int64(d.n * bs)
			}
		}
	}
	var exts []format.LeafExtent
	for _, p := range final {
		if p.kind != pieceData {
			continue
		}
		exts = append(exts, format.LeafExtent{Start: uint32(p.start - start), Count: uint32(p.n), Layer: p.loc.layer, Seq: p.loc.seq, Off: p.loc.off})
	}
	if !forced && sameExtents(op, final) {
		return old, nil
	}
	for seq, d := range adj {
		m.adj[seq] += d
	}
	m.dropPage(old)
	if len(exts) == 0 {
		return format.Ref{}, nil
	}
	leaf := &format.Leaf{Index: j, Extents: exts}
	var crc uint32
	m.scratch, crc = format.AppendLeaf(m.scratch[:0], leaf)
	ref, err := m.mw.add(m.ctx, 0, j, m.scratch, crc)
	if err != nil {
		return format.Ref{}, err
	}
	m.adj[ref.Seq] += int64(ref.Len)
	v.cache.put(&cachedPage{owner: v.sb.ID, seq: ref.Seq, off: ref.Off, leaf: leaf})
	return ref, nil
}

// sameExtents reports whether two full-coverage piece lists map the same
// data (ignoring how zero runs are split).
func sameExtents(a, b []piece) bool {
	da := a[:0:0]
	for _, p := range a {
		if p.kind == pieceData {
			da = append(da, p)
		}
	}
	i := 0
	for _, p := range b {
		if p.kind != pieceData {
			continue
		}
		if i >= len(da) || da[i] != p {
			return false
		}
		i++
	}
	return i == len(da)
}

// metaWriter writes map pages into meta segments during a checkpoint.
type metaWriter struct {
	v       *Volume
	w       *segWriter
	written []writtenSeg
}

type writtenSeg struct {
	seq  uint64
	size int64
}

// add appends a page and returns its ref.
func (mw *metaWriter) add(ctx context.Context, level uint8, index uint64, page []byte, crc uint32) (format.Ref, error) {
	v := mw.v
	if mw.w == nil || mw.w.room() < len(page) {
		if err := mw.finish(ctx); err != nil {
			return format.Ref{}, err
		}
		v.mu.Lock()
		seq := v.allocSeqLocked()
		v.mu.segs[seq] = &segMeta{kind: format.RecordMeta, open: true}
		v.mu.Unlock()
		mw.w = newSegWriter(seq, format.RecordMeta, v.sb.ID, v.bs, max(v.segSize, len(page)+8192))
	}
	off := mw.w.appendEntry(format.Entry{Kind: format.EntryPage, Level: uint16(level), Count: uint32(len(page)), LBA: index}, page)
	return format.Ref{Layer: 0, Len: uint32(len(page)), Seq: mw.w.seq, Off: uint32(off), CRC: crc}, nil
}

// finish writes the open meta segment.
func (mw *metaWriter) finish(ctx context.Context) error {
	w := mw.w
	if w == nil {
		return nil
	}
	v := mw.v
	w.closeRecord()
	w.sealed = true
	name := format.SegmentName(v.name, w.seq)
	if err := v.store.Put(ctx, name, w.buf[:w.tail]); err != nil {
		return objErr(name, 0, err)
	}
	mw.w = nil
	v.stats.backendWriteOps.Add(1)
	v.stats.backendWriteBytes.Add(int64(w.tail))
	mw.written = append(mw.written, writtenSeg{w.seq, int64(w.tail)})
	v.mu.Lock()
	if s := v.mu.segs[w.seq]; s != nil {
		s.open = false
		s.size = int64(w.tail)
	}
	v.mu.Unlock()
	return nil
}

var errNoCheckpoint = errors.New("blockmap: volume has no checkpoint")
