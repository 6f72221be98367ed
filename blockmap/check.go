package blockmap

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockmap/format"
)

// CheckReport summarizes a Check.
type CheckReport struct {
	Generation  uint64
	Pages       int   // map pages read (head and snapshots)
	Extents     int   // leaf extents
	MappedBytes int64 // bytes the head's map references
	Segments    int   // segment objects verified
	Snapshots   int
	// Leaked lists segments nothing references that are still stored
	// (left by a crash; the next reclaim deletes them). Not an error.
	Leaked []string
	// Problems lists every inconsistency found; Check's error is the first.
	Problems []string
}

// segRef is one reference into a segment found walking a map.
type segRef struct {
	off, n uint64
	lba    uint64 // data: the block the first byte belongs to
	page   bool
	level  uint8
	index  uint64
	what   string // who references it, for messages
}

// checker accumulates a Check.
type checker struct {
	v      *Volume
	ctx    context.Context
	rep    *CheckReport
	first  error
	refs   map[uint8]map[uint64][]segRef // layer → seq → references
	flags  map[uint64]uint8              // own seq → usage flags
	usage  map[uint64]int64              // own seq → referenced bytes, per walked map
	blocks uint64                        // the walked map's size in blocks
}

func (c *checker) problem(err error) {
	if c.first == nil {
		c.first = err
	}
	c.rep.Problems = append(c.rep.Problems, err.Error())
}

// Check verifies the volume against the store: it commits a checkpoint
// first (on a writable volume), then walks the committed map and every
// snapshot's map reading each page from the store, checks that every
// extent and page reference lands inside a valid record of its segment
// (checksums included), that nothing overlaps or lies beyond the end, and
// that the per-segment live-byte accounting equals what the maps
// reference. The error names the damaged object and wraps ErrCheck and
// blockdev.ErrCorrupt; backend failures pass up as themselves.
func (v *Volume) Check(ctx context.Context) (CheckReport, error) {
	var rep CheckReport
	v.mu.RLock()
	closed := v.mu.closed
	v.mu.RUnlock()
	if closed {
		return rep, blockdev.ErrClosed
	}
	if !v.readOnly {
		if err := v.Checkpoint(ctx); err != nil {
			return rep, err
		}
	}
	// Hold checkpoints and reclaims off: the committed state stays put.
	v.ckptMu.Lock()
	defer v.ckptMu.Unlock()
	v.reclaimMu.Lock()
	defer v.reclaimMu.Unlock()

	v.mu.RLock()
	base := v.mu.base
	size := v.mu.sizeBytes
	rep.Generation = v.mu.gen
	replaySeq := v.mu.replaySeq
	live := make(map[uint64]int64, len(v.mu.segs))
	pins := make(map[uint64]int32)
	flags := make(map[uint64]uint8)
	for seq, s := range v.mu.segs {
		if s.flags != 0 {
			flags[seq] = s.flags
		}
		if s.live != 0 {
			live[seq] = s.live
		}
		if s.pins != 0 {
			pins[seq] = s.pins
		}
	}
	snaps := make([]string, 0, len(v.mu.snaps))
	for n := range v.mu.snaps {
		snaps = append(snaps, n)
	}
	deltaEmpty := v.mu.active.empty() && len(v.mu.frozen) == 0
	v.mu.RUnlock()
	slices.Sort(snaps)

	c := &checker{v: v, ctx: ctx, rep: &rep, refs: make(map[uint8]map[uint64][]segRef), flags: flags}
	what := "volume " + v.name
	if v.snap != "" {
		what += "@" + v.snap
	}
	c.usage = make(map[uint64]int64)
	c.blocks = uint64(size) / uint64(v.bs)
	if err := c.walk(base, what); err != nil {
		return rep, err
	}
	for _, n := range c.usage {
		rep.MappedBytes += n
	}
	if v.snap == "" && deltaEmpty {
		// Exact accounting holds only when nothing waits in memory.
		compareUsage(c, format.CheckpointName(v.name, rep.Generation), c.usage, live)
	}

	// Snapshots: each map walked, each usage table compared, pins summed.
	wantPins := make(map[uint64]int32)
	if v.snap == "" {
		for _, name := range snaps {
			rec, err := readSnapshot(ctx, v.store, v.name, name)
			if err != nil {
				if errors.Is(err, blockdev.ErrCorrupt) || errors.Is(err, ErrNotFound) {
					c.problem(fmt.Errorf("%w: %w", ErrCheck, err))
					continue
				}
				return rep, err
			}
			rep.Snapshots++
			c.usage = make(map[uint64]int64)
			c.blocks = rec.Checkpoint.SizeBytes / uint64(v.bs)
			t := baseTree{root: rec.Checkpoint.Root, height: rec.Checkpoint.Height}
			if err := c.walk(t, "snapshot "+v.name+"@"+name); err != nil {
				return rep, err
			}
			rows := make(map[uint64]int64)
			for _, u := range rec.Checkpoint.Usage {
				if u.LiveBytes > 0 {
					rows[u.Seq] = int64(u.LiveBytes)
					wantPins[u.Seq]++
				}
			}
			compareUsage(c, format.SnapshotName(v.name, name), c.usage, rows)
		}
		for seq := range mergeKeys(pins, wantPins) {
			if pins[seq] != wantPins[seq] {
				c.problem(corruptf(format.SegmentName(v.name, seq), -1, "%w: pinned by %d snapshots in memory, %d on the store", ErrCheck, pins[seq], wantPins[seq]))
			}
		}
	}

	// Every referenced segment: read, parse, and match each reference.
	for layer, segs := range c.refs {
		for seq, refs := range segs {
			if err := c.checkSegment(layer, seq, refs); err != nil {
				return rep, err
			}
		}
	}

	// Leaks: stored segments below the replay point that nothing references.
	if v.snap == "" {
		prefix := format.SegmentPrefix(v.name)
		err := v.store.List(ctx, prefix, func(oi backend.ObjectInfo) error {
			seq, ok := format.ParseNumbered(prefix, oi.Name)
			if ok && seq < replaySeq && live[seq] == 0 && wantPins[seq] == 0 && len(c.refs[0][seq]) == 0 {
				rep.Leaked = append(rep.Leaked, oi.Name)
			}
			return nil
		})
		if err != nil {
			return rep, err
		}
	}
	if c.first != nil {
		return rep, c.first
	}
	return rep, nil
}

func mergeKeys[V any](a, b map[uint64]V) map[uint64]bool {
	out := make(map[uint64]bool, len(a)+len(b))
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// compareUsage reports every segment whose recorded live bytes differ
// from what the walked map references.
func compareUsage(c *checker, table string, got, recorded map[uint64]int64) {
	for seq := range mergeKeys(got, recorded) {
		if got[seq] != recorded[seq] {
			c.problem(corruptf(format.SegmentName(c.v.name, seq), -1,
				"%w: usage table of %s records %d live bytes, the map references %d", ErrCheck, table, recorded[seq], got[seq]))
		}
	}
}

// walk verifies one map tree and records its references.
func (c *checker) walk(t baseTree, what string) error {
	if t.root.IsZero() {
		return nil
	}
	return c.walkNode(t.root, t.height, 0, what)
}

func (c *checker) addRef(layer uint8, seq uint64, r segRef) {
	m := c.refs[layer]
	if m == nil {
		m = make(map[uint64][]segRef)
		c.refs[layer] = m
	}
	m[seq] = append(m[seq], r)
	if layer == 0 {
		c.usage[seq] += int64(r.n)
	}
}

func (c *checker) walkNode(ref format.Ref, level uint8, index uint64, what string) error {
	v := c.v
	if err := c.ctx.Err(); err != nil {
		return err
	}
	c.addRef(ref.Layer, ref.Seq, segRef{off: uint64(ref.Off), n: uint64(ref.Len), page: true, level: level, index: index, what: what})
	p, err := v.readPage(c.ctx, ref, level, index, false)
	if err != nil {
		if errors.Is(err, blockdev.ErrCorrupt) {
			c.problem(fmt.Errorf("%w: %s: node %d/%d: %w", ErrCheck, what, level, index, err))
			return nil
		}
		return err
	}
	c.rep.Pages++
	if level == 0 {
		leafStart := index << v.leafShift
		for _, e := range p.leaf.Extents {
			layer := int(ref.Layer) + int(e.Layer)
			if layer >= len(v.layerIDs) {
				c.problem(corruptf(v.segObject(ref.Layer, ref.Seq), int64(ref.Off), "%w: %s: leaf %d: extent in layer %d beyond the ancestry", ErrCheck, what, index, layer))
				continue
			}
			if leafStart+uint64(e.Start)+uint64(e.Count) > c.blocks {
				c.problem(corruptf(v.segObject(ref.Layer, ref.Seq), int64(ref.Off), "%w: %s: leaf %d: extent at block %d beyond the end (%d blocks)", ErrCheck, what, index, leafStart+uint64(e.Start), c.blocks))
			}
			c.rep.Extents++
			c.addRef(uint8(layer), e.Seq, segRef{off: uint64(e.Off), n: uint64(e.Count) * uint64(v.bs), lba: leafStart + uint64(e.Start), what: what})
		}
		return nil
	}
	for _, ch := range p.interior.Children {
		r := ch.Ref
		abs := int(ref.Layer) + int(r.Layer)
		if abs >= len(v.layerIDs) {
			c.problem(corruptf(v.segObject(ref.Layer, ref.Seq), int64(ref.Off), "%w: %s: child in layer %d beyond the ancestry", ErrCheck, what, abs))
			continue
		}
		r.Layer = uint8(abs)
		if err := c.walkNode(r, level-1, index<<v.fanShift|uint64(ch.Slot), what); err != nil {
			return err
		}
	}
	return nil
}

// payloadRange is one entry's payload in a segment.
type payloadRange struct {
	off, n uint64
	rec    int // record number: data references may span entries of one record
	page   bool
	level  uint8
	index  uint64 // page: node index; data: first LBA
}

// checkSegment reads a segment and matches every reference into it to a
// valid entry payload.
func (c *checker) checkSegment(layer uint8, seq uint64, refs []segRef) error {
	v := c.v
	name := v.segObject(layer, seq)
	oi, err := v.store.Stat(c.ctx, name)
	if errors.Is(err, backend.ErrNotFound) {
		c.problem(corruptf(name, -1, "%w: referenced by %s but missing", ErrCheck, refs[0].what))
		return nil
	}
	if err != nil {
		return err
	}
	b, err := v.readSegment(c.ctx, layer, seq, oi.Size)
	if err != nil {
		return err
	}
	c.rep.Segments++
	recs, _, _ := parseSegment(b, v.layerIDs[layer], seq, v.bs)
	var ranges []payloadRange
	for ri, r := range recs {
		off := uint64(r.off) + uint64(r.hdr.HeaderLen)
		for _, e := range r.hdr.Entries {
			n := e.PayloadBytes(v.bs)
			if n > 0 {
				ranges = append(ranges, payloadRange{off: off, n: n, rec: ri, page: e.Kind == format.EntryPage, level: uint8(e.Level), index: e.LBA})
			}
			off += n
		}
	}
	// Data references must also name the blocks their record wrote,
	// unless the segment was copied by reference to other LBAs.
	checkLBA := layer == 0 && c.flags[seq]&format.UsageShared == 0
	// ranges is sorted by construction; find the entry holding each
	// reference. (Overlaps within a map cannot pass this: leaf extents
	// are checked disjoint by the decoder, nodes by the radix layout, and
	// each page must be exactly the page entry for its node.)
	bs := uint64(v.bs)
	for _, r := range refs {
		i := sort.Search(len(ranges), func(k int) bool { return ranges[k].off+ranges[k].n > r.off })
		ok := i < len(ranges) && ranges[i].off <= r.off && ranges[i].page == r.page
		if ok && r.page {
			pr := ranges[i]
			ok = pr.off == r.off && pr.n == r.n && pr.level == r.level && pr.index == r.index
		}
		if ok && !r.page {
			// Walk the entries of one record that hold [r.off, r.off+r.n).
			for at, k := r.off, i; at < r.off+r.n; k++ {
				if k >= len(ranges) || ranges[k].page || ranges[k].rec != ranges[i].rec || ranges[k].off > at ||
					(checkLBA && ranges[k].index+(at-ranges[k].off)/bs != r.lba+(at-r.off)/bs) {
					ok = false
					break
				}
				at = ranges[k].off + ranges[k].n
			}
		}
		if !ok {
			kind := "data"
			if r.page {
				kind = fmt.Sprintf("page %d/%d", r.level, r.index)
			}
			c.problem(corruptf(name, int64(r.off), "%w: %s references %d bytes of %s not inside a valid record", ErrCheck, r.what, r.n, kind))
		}
	}
	return nil
}
