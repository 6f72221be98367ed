package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/lunway/lunway/backend"
)

// The overlay is what the log says about objects whose records are not
// yet applied to the store: for each such object, its base (the store's
// object, a pending Put's data, or nothing after a pending Delete) and
// the pending WriteAts on top, oldest first (later ones win).
//
//	object:   |------ base (Put data | store object | zeros) ------|
//	writes:        [w1 ]        [  w2  ]    [w3]         [  w4   ]
//	reads see:     w1   base    w2          w3   base    w4 (extends it)

type baseKind uint8

const (
	// baseInner: the store's object as it is now (every pending change is
	// in writes).
	baseInner baseKind = iota
	// basePut: a pending Put's data.
	basePut
	// baseEmpty: nothing (a pending Delete): zeros below writes, and no
	// object at all without writes.
	baseEmpty
)

// wspan is a pending WriteAt.
type wspan struct {
	span
	at  int64  // object offset
	seq uint64 // its record
}

// objState is the overlay of one object. Guarded by Cache.mu. writes is
// only ever appended to or replaced, so a reader may keep the slice it
// saw (a view) without copying.
type objState struct {
	lastSeq uint64
	base    baseKind
	baseSeq uint64 // the record that set base (0 for baseInner)
	put     span   // basePut
	writes  []wspan
	end     int64 // the object's size, or for baseInner a lower bound
	// innerSize is, for baseInner, the store's size of the object when
	// known (the uploader just wrote it), else -1.
	innerSize int64
	unixNano  int64
}

func (st *objState) exists() bool { return st.base != baseEmpty || len(st.writes) > 0 }

// indexLocked applies a record to the overlay.
func (c *Cache) indexLocked(r *rec) {
	st := c.mu.objs[r.name]
	if st == nil {
		st = &objState{innerSize: -1}
		c.mu.objs[r.name] = st
	}
	st.lastSeq, st.unixNano = r.seq, r.unixNano
	switch r.kind {
	case kindPut:
		st.base, st.baseSeq, st.put, st.writes, st.end = basePut, r.seq, r.data, nil, r.data.n
	case kindDelete:
		st.base, st.baseSeq, st.put, st.writes, st.end = baseEmpty, r.seq, span{}, nil, 0
	case kindWriteAt:
		st.writes = append(st.writes, wspan{span: r.data, at: r.off, seq: r.seq})
		if r.data.n > 0 {
			st.end = max(st.end, r.off+r.data.n)
		}
	}
}

// pruneLocked drops from the overlay what the store now holds (records up
// to applied; size is the object's size in the store now, -1 when not
// known); an object with nothing pending leaves the overlay.
func (c *Cache) pruneLocked(name string, applied uint64, size int64) {
	st := c.mu.objs[name]
	if st == nil {
		return
	}
	if st.lastSeq <= applied {
		delete(c.mu.objs, name)
		return
	}
	if st.baseSeq != 0 && st.baseSeq <= applied {
		st.base, st.baseSeq, st.put = baseInner, 0, span{}
	}
	if st.base == baseInner {
		st.innerSize = size
	}
	i := 0
	for i < len(st.writes) && st.writes[i].seq <= applied {
		i++
	}
	if i > 0 {
		// A new array: views hold the old one.
		st.writes = slices.Clone(st.writes[i:])
	}
	st.end = 0
	if st.base == basePut {
		st.end = st.put.n
	}
	for _, w := range st.writes {
		if w.n > 0 {
			st.end = max(st.end, w.at+w.n)
		}
	}
}

// view is a reader's snapshot of an objState. The log files it reads
// stay until it is closed (Cache.closeView).
type view struct {
	objState
	epoch uint64
}

func (c *Cache) openViewLocked(st *objState) *view {
	v := &view{objState: *st, epoch: c.mu.epoch}
	c.mu.viewsAt[v.epoch]++
	return v
}

func (c *Cache) closeView(v *view) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.viewsAt[v.epoch]--; c.mu.viewsAt[v.epoch] <= 0 {
		delete(c.mu.viewsAt, v.epoch)
	}
	c.collectLocked()
}

// covered reports whether writes cover [off, off+n) completely.
func covered(writes []wspan, off, n int64) bool {
	if n == 0 {
		return true
	}
	var ivs [][2]int64
	for _, w := range writes {
		if w.n > 0 && w.at < off+n && w.at+w.n > off {
			ivs = append(ivs, [2]int64{w.at, w.at + w.n})
		}
	}
	slices.SortFunc(ivs, func(a, b [2]int64) int {
		if a[0] < b[0] {
			return -1
		}
		if a[0] > b[0] {
			return 1
		}
		return 0
	})
	pos := off
	for _, iv := range ivs {
		if iv[0] > pos {
			return false
		}
		pos = max(pos, iv[1])
		if pos >= off+n {
			return true
		}
	}
	return pos >= off+n
}

// innerSize is the store's size of name, 0 when it does not exist.
func (c *Cache) innerSize(ctx context.Context, name string) (int64, error) {
	var info backend.ObjectInfo
	err := c.readInner(ctx, "stat", name, func(ctx context.Context) error {
		var err error
		info, err = c.inner.Stat(ctx, name)
		return err
	})
	if errors.Is(err, backend.ErrNotFound) {
		return 0, nil
	}
	return info.Size, err
}

// sizeOf is a view's object size; for a store-based object whose range
// [off, off+n) the writes cover, the size is only known to be at least
// off+n, which is all a read needs.
func (c *Cache) sizeOf(ctx context.Context, name string, v *view, off, n int64) (int64, error) {
	if v.base != baseInner {
		return v.end, nil
	}
	if n > 0 && covered(v.writes, off, n) {
		return max(v.end, off+n), nil
	}
	if v.innerSize >= 0 {
		return max(v.innerSize, v.end), nil
	}
	if sz, ok := c.rc.knownSize(name); ok {
		return max(sz, v.end), nil
	}
	sz, err := c.innerSize(ctx, name)
	if err != nil {
		return 0, err
	}
	return max(sz, v.end), nil
}

// readView reads [off, off+len(p)) of an object from its overlay view,
// with the Store's ReadAt semantics.
func (c *Cache) readView(ctx context.Context, name string, v *view, p []byte, off int64) (int, error) {
	if !v.exists() {
		return 0, fmt.Errorf("cache: read %q: %w", name, backend.ErrNotFound)
	}
	size, err := c.sizeOf(ctx, name, v, off, int64(len(p)))
	if err != nil {
		return 0, err
	}
	n := int64(len(p))
	eof := false
	if off >= size {
		n, eof = 0, true
	} else if off+n > size {
		n, eof = size-off, true
	}
	q := p[:n]
	if n > 0 {
		c.stats.logReads.Add(1)
		switch v.base {
		case basePut:
			m := max(0, min(n, v.put.n-off))
			if err := v.put.read(q[:m], off); err != nil {
				return 0, err
			}
			clear(q[m:])
		case baseEmpty:
			clear(q)
		case baseInner:
			if !covered(v.writes, off, n) {
				m, err := c.rc.read(ctx, name, q, off)
				if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, backend.ErrNotFound) {
					return 0, err
				}
				clear(q[m:])
			}
		}
		for _, w := range v.writes {
			lo, hi := max(w.at, off), min(w.at+w.n, off+n)
			if lo >= hi {
				continue
			}
			if err := w.read(q[lo-off:hi-off], lo-w.at); err != nil {
				return 0, err
			}
		}
	}
	if eof && n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}
