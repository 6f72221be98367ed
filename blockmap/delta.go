package blockmap

import (
	"slices"
	"sort"
)

// loc is where a run of blocks lives: byte off of segment seq of layer
// layer (0 = this volume, i = ancestry[i-1]).
type loc struct {
	seq   uint64
	off   uint32
	layer uint8
}

// advance returns the location blocks further on.
func (l loc) advance(blocks uint64, blockSize uint32) loc {
	l.off += uint32(blocks * uint64(blockSize))
	return l
}

// pieceKind says what a resolved run of blocks is.
type pieceKind uint8

const (
	// pieceGap: not covered by the layer asked (look further down).
	pieceGap pieceKind = iota
	// pieceZero: deallocated; reads as zeros.
	pieceZero
	// pieceData: mapped to loc.
	pieceData
)

// piece is a resolved run of blocks [start, start+n).
type piece struct {
	start uint64
	n     uint64
	kind  pieceKind
	loc   loc
}

// dext is one extent of a delta leaf: blocks [start, start+n) are
// deallocated (unmapped) or mapped to loc.
type dext struct {
	start    uint64
	n        uint32
	unmapped bool
	loc      loc
}

func (e dext) end() uint64 { return e.start + uint64(e.n) }

// dleaf holds the delta extents of one leaf, sorted and disjoint.
type dleaf struct {
	ext []dext
}

// delta is an in-memory set of recent map changes over one leaf
// geometry: the "memtable" in front of the paged base map. Changes are
// kept per leaf; whole leaves deallocated by one unmap are kept as leaf
// ranges instead, so that unmapping a terabyte costs one entry.
//
// Lookup rules: a leaf with a dleaf is answered by it where its extents
// cover; a leaf without one inside a cleared range is wholly deallocated;
// anything else is not covered. A dleaf created inside a cleared range
// starts with a whole-leaf unmapped extent, so it covers everything.
//
// A delta is not safe for concurrent use; the Volume guards it. A frozen
// delta is never modified again and may be read under a read lock.
type delta struct {
	leafShift uint8
	blockSize uint32
	leaves    map[uint64]*dleaf
	cleared   rangeSet
	extents   int // number of dexts plus cleared ranges: the memory bound
	// added counts, per own segment, the bytes of it this delta maps, so
	// that a segment referenced only from memory is never freed and GC
	// can estimate liveness before a checkpoint.
	added map[uint64]int64
}

func newDelta(leafShift uint8, blockSize uint32) *delta {
	return &delta{
		leafShift: leafShift,
		blockSize: blockSize,
		leaves:    make(map[uint64]*dleaf),
		added:     make(map[uint64]int64),
	}
}

func (d *delta) size() int { return d.extents + d.cleared.len() }

func (d *delta) empty() bool { return len(d.leaves) == 0 && d.cleared.len() == 0 }

func (d *delta) leafSpan() uint64 { return 1 << d.leafShift }

// set records that blocks [start, start+n) are mapped to l (unmapped
// false) or deallocated (unmapped true), replacing whatever the delta
// said about them.
func (d *delta) set(start, n uint64, unmapped bool, l loc) {
	if n == 0 {
		return
	}
	if !unmapped && l.layer == 0 {
		d.added[l.seq] += int64(n) * int64(d.blockSize)
	}
	span := d.leafSpan()
	end := start + n
	if unmapped {
		// Whole leaves go to the cleared set.
		first := (start + span - 1) >> d.leafShift
		last := end >> d.leafShift // exclusive
		if last > first {
			for idx, lf := range d.leaves {
				if idx >= first && idx < last {
					d.unref(lf.ext, 0, ^uint64(0))
					d.extents -= len(lf.ext)
					delete(d.leaves, idx)
				}
			}
			d.cleared.add(first, last)
			if start < first<<d.leafShift {
				d.setInLeaf(start>>d.leafShift, start, first<<d.leafShift-start, true, l)
			}
			if end > last<<d.leafShift {
				d.setInLeaf(last, last<<d.leafShift, end-last<<d.leafShift, true, l)
			}
			return
		}
	}
	for start < end {
		idx := start >> d.leafShift
		m := min(end, (idx+1)<<d.leafShift) - start
		d.setInLeaf(idx, start, m, unmapped, l)
		if !unmapped {
			l = l.advance(m, d.blockSize)
		}
		start += m
	}
}

// setInLeaf sets [start, start+n), which lies within leaf idx.
func (d *delta) setInLeaf(idx, start, n uint64, unmapped bool, l loc) {
	lf := d.leaves[idx]
	if lf == nil {
		lf = &dleaf{}
		d.leaves[idx] = lf
		if d.cleared.contains(idx) {
			lf.ext = append(lf.ext, dext{start: idx << d.leafShift, n: uint32(d.leafSpan()), unmapped: true})
			d.extents++
		}
	}
	d.unref(lf.ext, start, start+n)
	before := len(lf.ext)
	lf.ext = insertExtent(lf.ext, dext{start: start, n: uint32(n), unmapped: unmapped, loc: l}, d.blockSize)
	d.extents += len(lf.ext) - before
}

// unref subtracts from added the own-segment bytes that exts map within
// [lo, hi), which are about to be replaced.
func (d *delta) unref(exts []dext, lo, hi uint64) {
	i := sort.Search(len(exts), func(k int) bool { return exts[k].end() > lo })
	for ; i < len(exts) && exts[i].start < hi; i++ {
		e := exts[i]
		if e.unmapped || e.loc.layer != 0 {
			continue
		}
		n := min(e.end(), hi) - max(e.start, lo)
		seq := e.loc.seq
		if d.added[seq] -= int64(n) * int64(d.blockSize); d.added[seq] <= 0 {
			delete(d.added, seq)
		}
	}
}

// insertExtent puts e into the sorted, disjoint list exts, trimming or
// splitting what it overlaps, and merging with neighbours that continue
// it exactly.
func insertExtent(exts []dext, e dext, blockSize uint32) []dext {
	// i: first extent that ends after e.start.
	i := sort.Search(len(exts), func(k int) bool { return exts[k].end() > e.start })
	// j: first extent that starts at or after e.end().
	j := i
	for j < len(exts) && exts[j].start < e.end() {
		j++
	}
	var repl [3]dext
	r := repl[:0]
	if i < j && exts[i].start < e.start {
		head := exts[i]
		head.n = uint32(e.start - head.start)
		r = append(r, head)
	}
	r = append(r, e)
	if i < j && exts[j-1].end() > e.end() {
		tail := exts[j-1]
		cut := e.end() - tail.start
		tail.start = e.end()
		tail.n -= uint32(cut)
		if !tail.unmapped {
			tail.loc = tail.loc.advance(cut, blockSize)
		}
		r = append(r, tail)
	}
	exts = slices.Replace(exts, i, j, r...)
	// Merge the new extent with contiguous neighbours.
	k := i
	if k < len(exts) && exts[k].start != e.start {
		k++ // a head piece precedes e
	}
	if k+1 < len(exts) && continues(exts[k], exts[k+1], blockSize) {
		exts[k].n += exts[k+1].n
		exts = slices.Delete(exts, k+1, k+2)
	}
	if k > 0 && continues(exts[k-1], exts[k], blockSize) {
		exts[k-1].n += exts[k].n
		exts = slices.Delete(exts, k, k+1)
	}
	return exts
}

// continues reports whether b directly continues a: adjacent blocks, same
// state, and for mapped data the next bytes of the same segment.
func continues(a, b dext, blockSize uint32) bool {
	if a.end() != b.start || a.unmapped != b.unmapped || uint64(a.n)+uint64(b.n) > 1<<31 {
		return false
	}
	if a.unmapped {
		return true
	}
	return a.loc.layer == b.loc.layer && a.loc.seq == b.loc.seq &&
		uint64(a.loc.off)+uint64(a.n)*uint64(blockSize) == uint64(b.loc.off)
}

// resolve describes [start, start+n) as pieces, in order, without gaps
// in the sequence: runs the delta does not cover are pieceGap.
func (d *delta) resolve(start, n uint64, out []piece) []piece {
	end := start + n
	for start < end {
		idx := start >> d.leafShift
		leafEnd := min(end, (idx+1)<<d.leafShift)
		lf := d.leaves[idx]
		if lf == nil {
			kind := pieceGap
			if d.cleared.contains(idx) {
				kind = pieceZero
			}
			// Extend over following leaves in the same state cheaply.
			out = appendPiece(out, piece{start: start, n: leafEnd - start, kind: kind}, d.blockSize)
			start = leafEnd
			continue
		}
		i := sort.Search(len(lf.ext), func(k int) bool { return lf.ext[k].end() > start })
		for start < leafEnd {
			if i >= len(lf.ext) || lf.ext[i].start >= leafEnd {
				out = appendPiece(out, piece{start: start, n: leafEnd - start, kind: pieceGap}, d.blockSize)
				start = leafEnd
				break
			}
			e := lf.ext[i]
			if e.start > start {
				out = appendPiece(out, piece{start: start, n: e.start - start, kind: pieceGap}, d.blockSize)
				start = e.start
			}
			m := min(leafEnd, e.end()) - start
			p := piece{start: start, n: m, kind: pieceZero}
			if !e.unmapped {
				p.kind = pieceData
				p.loc = e.loc.advance(start-e.start, d.blockSize)
			}
			out = appendPiece(out, p, d.blockSize)
			start += m
			i++
		}
	}
	return out
}

// appendPiece appends p, merging it into the last piece when it
// continues it.
func appendPiece(out []piece, p piece, blockSize uint32) []piece {
	if k := len(out) - 1; k >= 0 {
		q := &out[k]
		if q.start+q.n == p.start && q.kind == p.kind {
			switch p.kind {
			case pieceGap, pieceZero:
				q.n += p.n
				return out
			case pieceData:
				if q.loc.layer == p.loc.layer && q.loc.seq == p.loc.seq &&
					uint64(q.loc.off)+q.n*uint64(blockSize) == uint64(p.loc.off) && q.n+p.n <= 1<<31 {
					q.n += p.n
					return out
				}
			}
		}
	}
	return append(out, p)
}

// overlay resolves the gaps of pieces through d, returning a new list.
func overlay(pieces []piece, d *delta, scratch []piece) []piece {
	out := scratch[:0]
	for _, p := range pieces {
		if p.kind != pieceGap {
			out = appendPiece(out, p, d.blockSize)
			continue
		}
		out = d.resolve(p.start, p.n, out)
	}
	return out
}

// dirtyLeaves returns the sorted indexes of the leaves with extents.
func (d *delta) dirtyLeaves() []uint64 {
	keys := make([]uint64, 0, len(d.leaves))
	for k := range d.leaves {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// rangeSet is a sorted set of disjoint, non-adjacent [lo, hi) ranges.
type rangeSet struct {
	r [][2]uint64
}

func (s *rangeSet) len() int { return len(s.r) }

func (s *rangeSet) add(lo, hi uint64) {
	if lo >= hi {
		return
	}
	// First range that ends at or after lo (may merge), last that starts at or before hi.
	i := sort.Search(len(s.r), func(k int) bool { return s.r[k][1] >= lo })
	j := i
	for j < len(s.r) && s.r[j][0] <= hi {
		lo = min(lo, s.r[j][0])
		hi = max(hi, s.r[j][1])
		j++
	}
	s.r = slices.Replace(s.r, i, j, [2]uint64{lo, hi})
}

func (s *rangeSet) contains(x uint64) bool {
	i := sort.Search(len(s.r), func(k int) bool { return s.r[k][1] > x })
	return i < len(s.r) && s.r[i][0] <= x
}

// overlaps reports whether any range meets [lo, hi).
func (s *rangeSet) overlaps(lo, hi uint64) bool {
	i := sort.Search(len(s.r), func(k int) bool { return s.r[k][1] > lo })
	return i < len(s.r) && s.r[i][0] < hi
}

// covers reports whether [lo, hi) lies inside one range.
func (s *rangeSet) covers(lo, hi uint64) bool {
	i := sort.Search(len(s.r), func(k int) bool { return s.r[k][1] > lo })
	return i < len(s.r) && s.r[i][0] <= lo && s.r[i][1] >= hi
}
