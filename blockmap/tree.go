package blockmap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/blockmap/format"
)

// baseTree is the committed map: a radix tree of immutable pages.
// root.Layer is absolute (relative to this volume).
type baseTree struct {
	root   format.Ref
	height uint8
}

// segObject names segment seq of layer.
func (v *Volume) segObject(layer uint8, seq uint64) string {
	// Reads name the same segments over and over: remember recent names
	// rather than build one string per read.
	slot := &v.segNames[(seq*uint64(len(v.layerNames))+uint64(layer))%uint64(len(v.segNames))]
	if n := slot.Load(); n != nil && n.seq == seq && n.layer == layer {
		return n.name
	}
	name := format.SegmentName(v.layerNames[layer], seq)
	slot.Store(&segName{layer: layer, seq: seq, name: name})
	return name
}

// segName is a remembered segment object name.
type segName struct {
	layer uint8
	seq   uint64
	name  string
}

// loadPage returns the page ref points to (ref.Layer absolute), checking
// that it is the node (level, index).
func (v *Volume) loadPage(ctx context.Context, ref format.Ref, level uint8, index uint64) (*cachedPage, error) {
	return v.readPage(ctx, ref, level, index, true)
}

// readPage is loadPage, optionally bypassing the cache (Check reads
// what the store holds).
func (v *Volume) readPage(ctx context.Context, ref format.Ref, level uint8, index uint64, useCache bool) (*cachedPage, error) {
	if int(ref.Layer) >= len(v.layerIDs) {
		return nil, corruptf(format.SegmentName(v.name, ref.Seq), int64(ref.Off), "page ref to layer %d of a volume with %d layers", ref.Layer, len(v.layerIDs))
	}
	owner := v.layerIDs[ref.Layer]
	if useCache {
		if p := v.cache.get(owner, ref.Seq, ref.Off); p != nil {
			v.stats.cacheHits.Add(1)
			return p, nil
		}
		v.stats.cacheMisses.Add(1)
	}
	name := v.segObject(ref.Layer, ref.Seq)
	b := make([]byte, ref.Len)
	n, err := v.store.ReadAt(ctx, name, b, int64(ref.Off))
	v.stats.backendReadOps.Add(1)
	v.stats.backendReadBytes.Add(int64(n))
	if err != nil {
		return nil, v.readErr(name, int64(ref.Off), err)
	}
	p, err := decodePage(b, ref, level, index, v.leafShift, v.fanShift)
	if err != nil {
		return nil, objErr(name, int64(ref.Off), err)
	}
	p.owner = owner
	if useCache {
		v.cache.put(p)
	}
	return p, nil
}

// readErr classifies a failed read of referenced data: a missing object
// or a short one means the map points at nothing (corruption); anything
// else (unavailable, closed) passes up as is.
func (v *Volume) readErr(name string, off int64, err error) error {
	if errors.Is(err, backend.ErrNotFound) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return corruptf(name, off, "referenced data missing: %v", err)
	}
	return objErr(name, off, err)
}

func decodePage(b []byte, ref format.Ref, level uint8, index uint64, leafShift, fanShift uint8) (*cachedPage, error) {
	p := &cachedPage{seq: ref.Seq, off: ref.Off}
	var err error
	if level == 0 {
		p.leaf, err = format.DecodeLeaf(b, leafShift)
		if err != nil {
			return nil, err
		}
		if p.leaf.Index != index {
			return nil, errNode("leaf", index, p.leaf.Index)
		}
	} else {
		p.interior, err = format.DecodeInterior(b, fanShift)
		if err != nil {
			return nil, err
		}
		if p.interior.Index != index || p.interior.Level != level {
			return nil, errNode("interior page", index, p.interior.Index)
		}
	}
	// DecodeLeaf/DecodeInterior verified the page's own checksum field;
	// it must also be the one the reference expects.
	if format.PageCRC(b) != ref.CRC {
		return nil, errPageCRC
	}
	return p, nil
}

var errPageCRC = &format.CorruptError{What: "page", Reason: "checksum differs from its reference"}

func errNode(what string, want, got uint64) error {
	return &format.CorruptError{What: what, Reason: fmt.Sprintf("referenced as node %d, holds node %d", want, got)}
}

// childRef finds the child of interior page p at slot and makes its
// layer absolute.
func (v *Volume) childRef(p *cachedPage, pageLayer uint8, slot uint32) (format.Ref, bool, error) {
	ch := p.interior.Children
	i := sort.Search(len(ch), func(k int) bool { return ch[k].Slot >= slot })
	if i == len(ch) || ch[i].Slot != slot {
		return format.Ref{}, false, nil
	}
	r := ch[i].Ref
	abs := int(pageLayer) + int(r.Layer)
	if abs >= len(v.layerIDs) {
		return format.Ref{}, false, corruptf(v.segObject(pageLayer, p.seq), int64(p.off), "child ref to layer %d beyond the ancestry", abs)
	}
	r.Layer = uint8(abs)
	return r, true, nil
}

// nodeRef descends the tree to the node (level, index) and returns its
// ref (absolute layer), or ok false when the subtree is empty.
func (v *Volume) nodeRef(ctx context.Context, t baseTree, level uint8, index uint64) (format.Ref, bool, error) {
	if t.root.IsZero() || level > t.height {
		return format.Ref{}, false, nil
	}
	fs := uint64(v.fanShift)
	if (uint64(t.height)-uint64(level))*fs < 64 && index>>((uint64(t.height)-uint64(level))*fs) != 0 {
		return format.Ref{}, false, nil // beyond the tree
	}
	ref := t.root
	for l := t.height; l > level; l-- {
		p, err := v.loadPage(ctx, ref, l, index>>((uint64(l)-uint64(level))*fs))
		if err != nil {
			return format.Ref{}, false, err
		}
		slot := uint32(index>>((uint64(l)-uint64(level)-1)*fs)) & (1<<fs - 1)
		r, ok, err := v.childRef(p, ref.Layer, slot)
		if err != nil || !ok {
			return format.Ref{}, false, err
		}
		ref = r
	}
	return ref, true, nil
}

// leaf descends to leaf idx and returns its page. When the leaf is
// absent it returns ok false and the first leaf index after the absent
// subtree that contains it, so that a scan can skip the whole subtree.
//
// Found leaves are remembered per tree (a tree is immutable: its root ref
// names it), so that the next read of the leaf skips the interior pages;
// within the memo's byte budget the decoded leaf itself is remembered too
// (a page is immutable), so that such a read makes no cache lookup at all.
func (v *Volume) leaf(ctx context.Context, t baseTree, idx uint64) (*cachedPage, format.Ref, bool, uint64, error) {
	fs := uint64(v.fanShift)
	beyond := uint64(t.height)*fs < 64 && idx>>(uint64(t.height)*fs) != 0
	if t.root.IsZero() || beyond {
		return nil, format.Ref{}, false, ^uint64(0), nil
	}
	slot := &v.leafMemo[idx%uint64(len(v.leafMemo))]
	m := slot.Load()
	if m != nil && m.idx == idx && m.tree == t {
		if m.page != nil {
			v.stats.cacheHits.Add(1)
			return m.page, m.ref, true, 0, nil
		}
		p, err := v.loadPage(ctx, m.ref, 0, idx)
		return p, m.ref, err == nil, 0, err
	}
	ref := t.root
	for l := uint64(t.height); l > 0; l-- {
		p, err := v.loadPage(ctx, ref, uint8(l), idx>>(l*fs))
		if err != nil {
			return nil, format.Ref{}, false, 0, err
		}
		slot := uint32(idx>>((l-1)*fs)) & (1<<fs - 1)
		r, ok, err := v.childRef(p, ref.Layer, slot)
		if err != nil {
			return nil, format.Ref{}, false, 0, err
		}
		if !ok {
			// The child at level l-1 is absent: skip all its leaves.
			span := uint64(1) << ((l - 1) * fs)
			return nil, format.Ref{}, false, (idx/span + 1) * span, nil
		}
		ref = r
	}
	p, err := v.loadPage(ctx, ref, 0, idx)
	if err != nil {
		return nil, format.Ref{}, false, 0, err
	}
	v.memoize(slot, &leafMemo{tree: t, idx: idx, ref: ref}, p)
	return p, ref, true, 0, nil
}

// leafMemo is a leaf as found in one tree: its ref and, when it fitted
// the memo's budget, its decoded page (cost bytes charged to memoBytes).
type leafMemo struct {
	tree baseTree
	idx  uint64
	ref  format.Ref
	page *cachedPage
	cost int64
}

// maxMemoBytes bounds the leaf pages a volume's memo holds (and 1/16 of
// its page cache's size, if less).
const maxMemoBytes = 4 << 20

// memoize stores m in slot, with page p if the pages the memo holds stay
// within v.memoBudget bytes, and uncharges the entry it replaces. The memo
// thus keeps at most memoBudget bytes of pages alive beyond the cache's
// bound (the cache may drop a page the memo still holds).
func (v *Volume) memoize(slot *atomic.Pointer[leafMemo], m *leafMemo, p *cachedPage) {
	cost := p.cost()
	for {
		used := v.memoBytes.Load()
		if used+cost > v.memoBudget {
			break
		}
		if v.memoBytes.CompareAndSwap(used, used+cost) {
			m.page, m.cost = p, cost
			break
		}
	}
	if old := slot.Swap(m); old != nil && old.cost != 0 {
		v.memoBytes.Add(-old.cost)
	}
}

// baseResolve describes [start, start+n) from the committed tree.
func (v *Volume) baseResolve(ctx context.Context, t baseTree, start, n uint64, out []piece) ([]piece, error) {
	end := start + n
	for start < end {
		idx := start >> v.leafShift
		leafStart := idx << v.leafShift
		leafEnd := min(end, (idx+1)<<v.leafShift)
		p, ref, ok, next, err := v.leaf(ctx, t, idx)
		if err != nil {
			return nil, err
		}
		if !ok {
			skipEnd := end
			if next < (end+(1<<v.leafShift)-1)>>v.leafShift {
				skipEnd = min(end, next<<v.leafShift)
			}
			out = appendPiece(out, piece{start: start, n: skipEnd - start, kind: pieceZero}, v.bs)
			start = skipEnd
			continue
		}
		ext := p.leaf.Extents
		rel := uint32(start - leafStart)
		i := sort.Search(len(ext), func(k int) bool { return ext[k].Start+ext[k].Count > rel })
		for start < leafEnd {
			if i >= len(ext) || leafStart+uint64(ext[i].Start) >= leafEnd {
				out = appendPiece(out, piece{start: start, n: leafEnd - start, kind: pieceZero}, v.bs)
				start = leafEnd
				break
			}
			e := ext[i]
			es := leafStart + uint64(e.Start)
			if es > start {
				out = appendPiece(out, piece{start: start, n: es - start, kind: pieceZero}, v.bs)
				start = es
			}
			m := min(leafEnd, es+uint64(e.Count)) - start
			layer := int(ref.Layer) + int(e.Layer)
			if layer >= len(v.layerIDs) {
				return nil, corruptf(v.segObject(ref.Layer, ref.Seq), int64(ref.Off), "leaf %d: extent in layer %d beyond the ancestry", idx, layer)
			}
			l := loc{seq: e.Seq, off: e.Off, layer: uint8(layer)}.advance(start-es, v.bs)
			out = appendPiece(out, piece{start: start, n: m, kind: pieceData, loc: l}, v.bs)
			start += m
			i++
		}
	}
	return out, nil
}

// resolved is a resolved range pinned to a view: the segments it
// references are not deleted until release.
type resolved struct {
	pieces []piece
	mem    []*segWriter // per piece: the in-memory segment, if any
	bufs   [][]byte     // per piece: that segment's buffer at resolution time
	view   *view
	v      *Volume
	gen    uint64 // baseGen at resolution
	// deltaPieces is the resolution through the deltas alone (gaps where
	// the base answers), for optimistic re-checks.
	deltaPieces []piece
}

func (r *resolved) release() {
	if r.view != nil {
		r.view.release()
		r.view = nil
	}
	for i, w := range r.mem {
		if w != nil {
			r.v.unrefSeg(w)
			r.mem[i] = nil
		}
	}
	clear(r.bufs)
	if cap(r.pieces) > 64 || cap(r.deltaPieces) > 64 {
		return // keep the pool's buffers small
	}
	r.pieces, r.deltaPieces, r.mem, r.bufs = r.pieces[:0], r.deltaPieces[:0], r.mem[:0], r.bufs[:0]
	r.v.resolvedPool.Put(r)
}

// deltaResolveLocked resolves through the active and frozen deltas.
func (v *Volume) deltaResolveLocked(start, n uint64) []piece {
	return v.deltaResolveInto(start, n, nil)
}

// deltaResolveInto is deltaResolveLocked appending to out (the read lock
// is held).
func (v *Volume) deltaResolveInto(start, n uint64, out []piece) []piece {
	pieces := v.mu.active.resolve(start, n, out)
	for i := len(v.mu.frozen) - 1; i >= 0; i-- {
		if !hasGap(pieces) {
			break
		}
		pieces = overlay(pieces, v.mu.frozen[i], nil)
	}
	return pieces
}

func hasGap(pieces []piece) bool {
	for _, p := range pieces {
		if p.kind == pieceGap {
			return true
		}
	}
	return false
}

// resolve maps [start, start+n) to pieces: the deltas under the read
// lock, then the committed tree without it. The caller must release.
func (v *Volume) resolve(ctx context.Context, start, n uint64) (*resolved, error) {
	return v.resolveChecked(ctx, start, n, false)
}

// resolveChecked is resolve that, when check is set, first checks the
// volume's state and the range (checkLocked, for a read) under the same
// read lock.
func (v *Volume) resolveChecked(ctx context.Context, start, n uint64, check bool) (*resolved, error) {
	v.mu.RLock()
	if check {
		bs := int64(v.bs)
		if err := v.checkLocked(ctx, int64(start)*bs, int64(n)*bs, false); err != nil {
			v.mu.RUnlock()
			return nil, err
		}
	}
	r, _ := v.resolvedPool.Get().(*resolved)
	if r == nil {
		r = &resolved{}
	}
	r.v = v
	r.deltaPieces = v.deltaResolveInto(start, n, r.deltaPieces[:0])
	base := v.mu.base
	r.gen = v.mu.baseGen
	r.view = v.mu.view
	r.view.refs.Add(1)
	v.mu.RUnlock()

	pieces := r.deltaPieces
	if hasGap(pieces) {
		out := r.pieces[:0]
		for _, p := range pieces {
			if p.kind != pieceGap {
				out = appendPiece(out, p, v.bs)
				continue
			}
			var err error
			if out, err = v.baseResolve(ctx, base, p.start, p.n, out); err != nil {
				r.pieces, r.mem = out[:0], r.mem[:0]
				r.release()
				return nil, err
			}
		}
		pieces = out
	}
	if !hasGap(r.deltaPieces) {
		// Keep r.pieces and r.deltaPieces distinct: both are reused.
		pieces = append(r.pieces[:0], pieces...)
	}
	r.pieces = pieces
	// Attach in-memory segments. A segment leaves v.mu.mem only once it
	// is durable, so pieces not found here can be read from the store.
	r.mem = slices.Grow(r.mem[:0], len(pieces))[:len(pieces)]
	r.bufs = slices.Grow(r.bufs[:0], len(pieces))[:len(pieces)]
	// Pieces below memMin (loaded after they were resolved) are in no
	// in-memory segment: the common case of a read of older data takes
	// no lock here.
	memMin, inMem := v.memMin.Load(), false
	for _, p := range pieces {
		if p.kind == pieceData && p.loc.layer == 0 && p.loc.seq >= memMin {
			inMem = true
			break
		}
	}
	if !inMem {
		return r, nil
	}
	v.mu.RLock()
	for i, p := range pieces {
		if p.kind == pieceData && p.loc.layer == 0 {
			if w := v.mu.mem[p.loc.seq]; w != nil {
				w.readers.Add(1)
				r.mem[i] = w
				r.bufs[i] = w.buf
			}
		}
	}
	v.mu.RUnlock()
	return r, nil
}

// storeRead is one read of a run of pieces from one segment.
type storeRead struct {
	name  string
	layer uint8
	seq   uint64
	off   int64
	pOff  uint64 // where dst starts in the caller's buffer
	dst   []byte
}

func (v *Volume) doRead(ctx context.Context, rd *storeRead) error {
	n, err := v.store.ReadAt(ctx, rd.name, rd.dst, rd.off)
	v.stats.backendReadOps.Add(1)
	v.stats.backendReadBytes.Add(int64(n))
	if err != nil {
		return v.readErr(rd.name, rd.off, err)
	}
	return nil
}

// readPieces fills p from resolved pieces: zeros, memory, or the store
// (contiguous runs of one segment in one read, several reads in parallel).
func (v *Volume) readPieces(ctx context.Context, r *resolved, p []byte) error {
	bs := uint64(v.bs)
	base := r.pieces[0].start
	var small [4]storeRead
	reads := small[:0]
	for i, pc := range r.pieces {
		dst := p[(pc.start-base)*bs : (pc.start-base+pc.n)*bs]
		switch {
		case pc.kind != pieceData:
			clear(dst)
		case r.bufs[i] != nil:
			b := r.bufs[i]
			off := int(pc.loc.off)
			if off+len(dst) > len(b) {
				return corruptf(v.segObject(0, pc.loc.seq), int64(off), "in-memory segment shorter than its map entry")
			}
			copy(dst, b[off:off+len(dst)])
		default:
			off := int64(pc.loc.off)
			pOff := (pc.start - base) * bs
			if k := len(reads) - 1; k >= 0 && reads[k].pOff+uint64(len(reads[k].dst)) == pOff &&
				reads[k].off+int64(len(reads[k].dst)) == off && reads[k].layer == pc.loc.layer && reads[k].seq == pc.loc.seq {
				reads[k].dst = p[reads[k].pOff : pOff+uint64(len(dst))]
			} else {
				reads = append(reads, storeRead{name: v.segObject(pc.loc.layer, pc.loc.seq), layer: pc.loc.layer, seq: pc.loc.seq, off: off, pOff: pOff, dst: dst})
			}
		}
	}
	switch len(reads) {
	case 0:
		return nil
	case 1:
		return v.doRead(ctx, &reads[0])
	}
	return v.parallelReads(ctx, slices.Clone(reads))
}

// parallelReads runs reads with bounded concurrency.
func (v *Volume) parallelReads(ctx context.Context, reads []storeRead) error {
	const parallel = 8
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  int
	)
	for range min(parallel, len(reads)) {
		wg.Go(func() {
			for {
				mu.Lock()
				if next >= len(reads) || first != nil {
					mu.Unlock()
					return
				}
				rd := &reads[next]
				next++
				mu.Unlock()
				if err := v.doRead(ctx, rd); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return first
}
