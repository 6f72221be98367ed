package qcow2

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/lunway/lunway/image"
)

// Entry bits.
const (
	entryCopied     = 1 << 63
	entryCompressed = 1 << 62
	entryZero       = 1 << 0
	offsetMask      = 0x00fffffffffffe00 // bits 9..55: host offset
	l1OffsetMask    = 0x00fffffffffffe00

	// l2CacheBytes bounds the L2 tables kept in memory per reader.
	l2CacheBytes = 32 << 20
)

// Reader is an open qcow2 image. It implements image.Reader and is safe
// for concurrent use.
type Reader struct {
	r           io.ReaderAt
	fileSize    int64
	h           *Header
	clusterBits uint32
	clusterSize int64
	l2Bits      uint32 // log2(entries per L2 table)
	extL2       bool   // extended L2 entries: 128 bits, 32 subclusters
	subBits     uint32 // log2(subcluster size) with extended L2 entries
	l1          []uint64
	backing     image.Reader // nil without a backing file
	backingName string

	// Reserved ranges of the file (header cluster, L1 table, refcount
	// table) that no L2 table may overlap.
	l1Range, rtRange [2]int64

	cache struct {
		sync.Mutex
		tables map[int64][]uint64 // L2 table host offset → entries
		max    int
	}
}

var _ image.Reader = (*Reader)(nil)

// Open reads the qcow2 image in r (fileSize bytes). res opens the backing
// file, if any; a nil res refuses images with a backing file.
func Open(r io.ReaderAt, fileSize int64, res image.Resolver) (*Reader, error) {
	if fileSize < v2HeaderLen {
		return nil, image.Corruptf("qcow2: file of %d bytes: too short for a header", fileSize)
	}
	fixed := make([]byte, v2HeaderLen)
	if err := image.ReadFull(r, fixed, 0, "qcow2: header"); err != nil {
		return nil, err
	}
	// Read the header cluster, whose size the header tells (ParseHeader
	// refuses an invalid one).
	n := min(fileSize, 1<<minClusterBits)
	if cb := binary.BigEndian.Uint32(fixed[20:]); cb >= minClusterBits && cb <= maxClusterBits {
		n = min(fileSize, int64(1)<<cb)
	}
	head := make([]byte, n)
	if err := image.ReadFull(r, head, 0, "qcow2: header cluster"); err != nil {
		return nil, err
	}
	h, err := ParseHeader(head)
	if err != nil {
		return nil, err
	}
	if err := h.check(); err != nil {
		return nil, err
	}
	q := &Reader{
		r:           r,
		fileSize:    fileSize,
		h:           h,
		clusterBits: h.ClusterBits,
		clusterSize: h.ClusterSize(),
		l2Bits:      h.ClusterBits - 3,
		extL2:       h.IncompatibleFeatures&incompatExtendedL2 != 0,
	}
	if q.extL2 {
		q.l2Bits = h.ClusterBits - 4
		q.subBits = h.ClusterBits - 5
	}
	if err := q.loadL1(); err != nil {
		return nil, err
	}
	q.cache.tables = make(map[int64][]uint64)
	q.cache.max = max(4, l2CacheBytes>>h.ClusterBits)
	if h.BackingFileOffset != 0 {
		if err := q.openBacking(head, res); err != nil {
			return nil, err
		}
	}
	return q, nil
}

// rangeInFile checks that [off, off+n) lies inside the file.
func (q *Reader) rangeInFile(off, n uint64) bool {
	return off <= uint64(q.fileSize) && n <= uint64(q.fileSize)-off
}

func overlaps(a, b [2]int64) bool { return a[0] < b[1] && b[0] < a[1] }

func (q *Reader) loadL1() error {
	h := q.h
	cs := uint64(q.clusterSize)
	// Entries needed to map the virtual size.
	bytesPerL1 := uint64(1) << (q.clusterBits + q.l2Bits)
	need := (h.Size + bytesPerL1 - 1) / bytesPerL1
	if uint64(h.L1Size) < need {
		return image.Corruptf("qcow2: l1_size %d: virtual size %d needs %d entries", h.L1Size, h.Size, need)
	}
	l1Bytes := uint64(h.L1Size) * 8
	if l1Bytes > image.MaxTableBytes {
		return image.Limitf("qcow2: L1 table of %d entries", h.L1Size)
	}
	if h.L1Size > 0 {
		if h.L1TableOffset%cs != 0 || h.L1TableOffset == 0 {
			return image.Corruptf("qcow2: L1 table offset 0x%x: not a cluster-aligned offset after the header", h.L1TableOffset)
		}
		if !q.rangeInFile(h.L1TableOffset, l1Bytes) {
			return image.Corruptf("qcow2: L1 table offset 0x%x (+%d bytes): past the end of the file (%d bytes)", h.L1TableOffset, l1Bytes, q.fileSize)
		}
	}
	q.l1Range = [2]int64{int64(h.L1TableOffset), int64(h.L1TableOffset + l1Bytes)}
	rtBytes := uint64(h.RefcountTableClusters) * cs
	if h.RefcountTableClusters > 0 {
		if h.RefcountTableOffset%cs != 0 || h.RefcountTableOffset == 0 ||
			!q.rangeInFile(h.RefcountTableOffset, rtBytes) {
			return image.Corruptf("qcow2: refcount table offset 0x%x (%d clusters): not aligned or past the end of the file", h.RefcountTableOffset, h.RefcountTableClusters)
		}
		q.rtRange = [2]int64{int64(h.RefcountTableOffset), int64(h.RefcountTableOffset + rtBytes)}
		if h.L1Size > 0 && overlaps(q.l1Range, q.rtRange) {
			return image.Corruptf("qcow2: L1 table [0x%x,0x%x) overlaps the refcount table [0x%x,0x%x)",
				q.l1Range[0], q.l1Range[1], q.rtRange[0], q.rtRange[1])
		}
	}
	buf := make([]byte, l1Bytes)
	if err := image.ReadFull(q.r, buf, int64(h.L1TableOffset), "qcow2: L1 table"); err != nil {
		return err
	}
	q.l1 = make([]uint64, h.L1Size)
	for i := range q.l1 {
		e := binary.BigEndian.Uint64(buf[i*8:])
		if off := e & l1OffsetMask; off != 0 {
			if off%cs != 0 {
				return image.Corruptf("qcow2: L1 entry %d: L2 table offset 0x%x not cluster aligned", i, off)
			}
			if !q.rangeInFile(off, cs) {
				return image.Corruptf("qcow2: L1 entry %d: L2 table offset 0x%x past the end of the file (%d bytes)", i, off, q.fileSize)
			}
			l2 := [2]int64{int64(off), int64(off + cs)}
			if off < cs || overlaps(l2, q.l1Range) || overlaps(l2, q.rtRange) {
				return image.Corruptf("qcow2: L1 entry %d: L2 table offset 0x%x overlaps the header, L1 or refcount table", i, off)
			}
		}
		q.l1[i] = e
	}
	return nil
}

func (q *Reader) openBacking(head []byte, res image.Resolver) error {
	h := q.h
	end := h.BackingFileOffset + uint64(h.BackingFileSize)
	if end > uint64(len(head)) || h.BackingFileOffset < uint64(h.HeaderLength) {
		return image.Corruptf("qcow2: backing file name at 0x%x (%d bytes): outside the header cluster", h.BackingFileOffset, h.BackingFileSize)
	}
	q.backingName = string(head[h.BackingFileOffset:end])
	if res == nil {
		return image.Unsupportedf("qcow2: backing file %q: no resolver to open it", q.backingName)
	}
	var format image.Format
	if h.BackingFormat != "" {
		f, ok := image.ParseFormat(h.BackingFormat)
		if !ok {
			return image.Unsupportedf("qcow2: backing file %q: format %q", q.backingName, h.BackingFormat)
		}
		format = f
	}
	b, err := res.OpenBacking(q.backingName, format)
	if err != nil {
		return fmt.Errorf("qcow2: backing file %q: %w", q.backingName, err)
	}
	q.backing = b
	return nil
}

// Header returns the decoded header.
func (q *Reader) Header() *Header { return q.h }

// BackingFile returns the backing file name as the image records it.
func (q *Reader) BackingFile() string { return q.backingName }

// Format implements image.Reader.
func (q *Reader) Format() image.Format { return image.QCOW2 }

// Size implements image.Reader.
func (q *Reader) Size() int64 { return int64(q.h.Size) }

// Close implements image.Reader; it closes the backing chain.
func (q *Reader) Close() error {
	if q.backing != nil {
		return q.backing.Close()
	}
	return nil
}

// l2Table returns the L2 table for guest cluster index gc, or nil when the
// L1 entry is unallocated.
func (q *Reader) l2Table(gc int64) ([]uint64, error) {
	i := gc >> q.l2Bits
	if i >= int64(len(q.l1)) {
		return nil, image.Corruptf("qcow2: cluster %d: past the L1 table", gc)
	}
	off := int64(q.l1[i] & l1OffsetMask)
	if off == 0 {
		return nil, nil
	}
	q.cache.Lock()
	t, ok := q.cache.tables[off]
	q.cache.Unlock()
	if ok {
		return t, nil
	}
	buf := make([]byte, q.clusterSize)
	if err := image.ReadFull(q.r, buf, off, "qcow2: L2 table"); err != nil {
		return nil, err
	}
	t = make([]uint64, len(buf)/8)
	for j := range t {
		t[j] = binary.BigEndian.Uint64(buf[j*8:])
	}
	q.cache.Lock()
	if len(q.cache.tables) >= q.cache.max {
		for k := range q.cache.tables { // evict an arbitrary table
			delete(q.cache.tables, k)
			break
		}
	}
	q.cache.tables[off] = t
	q.cache.Unlock()
	return t, nil
}

// clusterKind classifies an L2 entry.
type clusterKind uint8

const (
	kindUnallocated clusterKind = iota // read from the backing file, or zeros
	kindZero
	kindNormal
	kindCompressed
)

// Extended L2 entries (incompatible feature bit 4) are 128 bits: the
// standard entry, then a subcluster bitmap whose bits 0..31 mark the 32
// subclusters allocated in this image and bits 32..63 those that read as
// zeros.

// lookup returns the kind of the unit (cluster, or subcluster with
// extended L2 entries) holding virtual offset vo, the host offset of its
// cluster (or the compressed cluster descriptor), and the virtual offset
// where the unit ends.
func (q *Reader) lookup(vo int64) (kind clusterKind, host uint64, unitEnd int64, err error) {
	gc := vo >> q.clusterBits
	unitEnd = (gc + 1) << q.clusterBits
	t, err := q.l2Table(gc)
	if err != nil || t == nil {
		return kindUnallocated, 0, unitEnd, err
	}
	idx := gc & (1<<q.l2Bits - 1)
	var e, bm uint64
	if q.extL2 {
		e, bm = t[2*idx], t[2*idx+1]
	} else {
		e = t[idx]
	}
	if e&entryCompressed != 0 {
		return kindCompressed, e, unitEnd, nil
	}
	off := e & offsetMask
	if q.extL2 {
		sc := uint64(vo&(q.clusterSize-1)) >> q.subBits
		unitEnd = gc<<q.clusterBits + int64(sc+1)<<q.subBits
		alloc, zero := bm>>sc&1 != 0, bm>>(32+sc)&1 != 0
		switch {
		case alloc && zero:
			return 0, 0, 0, image.Corruptf("qcow2: L2 entry for cluster %d: subcluster %d both allocated and zero", gc, sc)
		case zero:
			return kindZero, 0, unitEnd, nil
		case !alloc:
			return kindUnallocated, 0, unitEnd, nil
		case off == 0:
			return 0, 0, 0, image.Corruptf("qcow2: L2 entry for cluster %d: subcluster %d allocated in an unallocated cluster", gc, sc)
		}
	} else {
		if e&entryZero != 0 {
			return kindZero, 0, unitEnd, nil
		}
		if off == 0 {
			return kindUnallocated, 0, unitEnd, nil
		}
	}
	if off%uint64(q.clusterSize) != 0 {
		return 0, 0, 0, image.Corruptf("qcow2: L2 entry for cluster %d: data offset 0x%x not cluster aligned", gc, off)
	}
	if off >= uint64(q.fileSize) {
		return 0, 0, 0, image.Corruptf("qcow2: L2 entry for cluster %d: data offset 0x%x past the end of the file (%d bytes)", gc, off, q.fileSize)
	}
	return kindNormal, off, unitEnd, nil
}

// ReadAt implements image.Reader.
func (q *Reader) ReadAt(p []byte, off int64) (int, error) {
	n, eof := image.CheckRead(p, off, int64(q.h.Size))
	if n == 0 {
		return 0, eof
	}
	p = p[:n]
	var cbuf []byte // scratch for compressed clusters
	// Adjacent clusters stored contiguously are read with one call.
	var run struct {
		dst  []byte
		host int64
	}
	flush := func() error {
		if len(run.dst) == 0 {
			return nil
		}
		err := q.readHost(run.dst, run.host)
		run.dst = nil
		return err
	}
	pos := 0
	for pos < n {
		vo := off + int64(pos)
		gc, in := vo>>q.clusterBits, vo&(q.clusterSize-1)
		kind, host, unitEnd, err := q.lookup(vo)
		if err != nil {
			return pos, err
		}
		k := min(int64(n-pos), unitEnd-vo)
		dst := p[pos : pos+int(k)]
		if kind == kindNormal {
			h := int64(host) + in
			if len(run.dst) > 0 && run.host+int64(len(run.dst)) == h && &run.dst[len(run.dst)-1] == &p[pos-1] {
				run.dst = p[pos-len(run.dst) : pos+int(k)]
			} else {
				if err := flush(); err != nil {
					return pos, err
				}
				run.dst, run.host = dst, h
			}
			pos += int(k)
			continue
		}
		if err := flush(); err != nil {
			return pos, err
		}
		switch kind {
		case kindZero:
			clear(dst)
		case kindUnallocated:
			if err := q.readBacking(dst, vo); err != nil {
				return pos, err
			}
		case kindCompressed:
			if cbuf == nil {
				cbuf = make([]byte, q.clusterSize)
			}
			if err := q.readCompressed(cbuf, host, gc); err != nil {
				return pos, err
			}
			copy(dst, cbuf[in:])
		}
		pos += int(k)
	}
	if err := flush(); err != nil {
		return 0, err
	}
	return n, eof
}

// readHost reads file data; a cluster cut short by the end of the file
// reads as zeros past it.
func (q *Reader) readHost(p []byte, off int64) error {
	m, err := q.r.ReadAt(p, off)
	if m == len(p) {
		return nil
	}
	if err != nil && err != io.EOF {
		return fmt.Errorf("qcow2: read data at 0x%x: %w", off, err)
	}
	clear(p[m:])
	return nil
}

func (q *Reader) readBacking(p []byte, vo int64) error {
	if q.backing == nil {
		clear(p)
		return nil
	}
	bs := q.backing.Size()
	if vo >= bs {
		clear(p)
		return nil
	}
	k := min(int64(len(p)), bs-vo)
	if _, err := q.backing.ReadAt(p[:k], vo); err != nil && err != io.EOF {
		return fmt.Errorf("qcow2: backing file %q: %w", q.backingName, err)
	}
	clear(p[k:])
	return nil
}

// compressedExtent decodes a compressed cluster descriptor: bits 0..x-1
// hold the host offset and bits x..61 the number of additional 512-byte
// sectors, with x = 62 - (cluster_bits - 8).
func (q *Reader) compressedExtent(e uint64) (off, n int64) {
	x := 62 - (q.clusterBits - 8)
	o := e & (1<<x - 1)
	sectors := (e >> x) & (1<<(q.clusterBits-8) - 1)
	return int64(o), int64(sectors+1)*512 - int64(o&511)
}

func (q *Reader) readCompressed(dst []byte, e uint64, gc int64) error {
	off, n := q.compressedExtent(e)
	if off >= q.fileSize {
		return image.Corruptf("qcow2: compressed cluster %d: offset 0x%x past the end of the file (%d bytes)", gc, off, q.fileSize)
	}
	n = min(n, q.fileSize-off, image.MaxCompressedCluster)
	src := make([]byte, n)
	if err := image.ReadFull(q.r, src, off, "qcow2: compressed cluster"); err != nil {
		return err
	}
	return inflate(dst, src, gc)
}

// inflate decompresses a raw deflate stream into exactly len(dst) bytes.
func inflate(dst, src []byte, gc int64) error {
	zr := flate.NewReader(bytes.NewReader(src))
	defer zr.Close()
	if _, err := io.ReadFull(zr, dst); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return image.Corruptf("qcow2: compressed cluster %d: inflates to fewer than %d bytes", gc, len(dst))
		}
		return image.Corruptf("qcow2: compressed cluster %d: %v", gc, err)
	}
	return nil
}

// Map implements image.Reader.
func (q *Reader) Map(ctx context.Context, off, length int64) ([]image.Extent, error) {
	length, err := image.CheckMap(off, length, int64(q.h.Size))
	if err != nil {
		return nil, err
	}
	var out image.ExtentList
	end := off + length
	for vo := off; vo < end; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		gc := vo >> q.clusterBits
		// A whole unallocated L2 range is skipped in one step.
		if i := gc >> q.l2Bits; q.l1[i]&l1OffsetMask == 0 {
			l2End := (i + 1) << (q.l2Bits + q.clusterBits)
			k := min(end, l2End) - vo
			if err := q.mapBacking(ctx, &out, vo, k); err != nil {
				return nil, err
			}
			vo += k
			continue
		}
		kind, _, unitEnd, err := q.lookup(vo)
		if err != nil {
			return nil, err
		}
		k := min(end-vo, unitEnd-vo)
		switch kind {
		case kindNormal, kindCompressed:
			out.Add(vo, k, image.Data)
		case kindZero:
			out.Add(vo, k, image.Zero)
		case kindUnallocated:
			if err := q.mapBacking(ctx, &out, vo, k); err != nil {
				return nil, err
			}
		}
		vo += k
	}
	return out, nil
}

func (q *Reader) mapBacking(ctx context.Context, out *image.ExtentList, vo, n int64) error {
	if q.backing == nil || vo >= q.backing.Size() {
		out.Add(vo, n, image.Hole)
		return nil
	}
	k := min(n, q.backing.Size()-vo)
	for done := int64(0); done < k; {
		ext, err := q.backing.Map(ctx, vo+done, k-done)
		if err != nil {
			return fmt.Errorf("qcow2: backing file %q: %w", q.backingName, err)
		}
		if len(ext) == 0 {
			return image.Corruptf("qcow2: backing file %q: empty map at %d", q.backingName, vo+done)
		}
		for _, e := range ext {
			if e.Off != vo+done || e.Len <= 0 || e.Len > k-done {
				return image.Corruptf("qcow2: backing file %q: map extent [%d,+%d) out of order", q.backingName, e.Off, e.Len)
			}
			out.Add(e.Off, e.Len, e.Kind)
			done += e.Len
		}
	}
	out.Add(vo+k, n-k, image.Hole)
	return nil
}
