package vmdk

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/raw"
)

// extent is one piece of the virtual disk.
type extent interface {
	// readAt fills p from offset off of the extent (in range).
	readAt(p []byte, off int64) error
	// mapRange adds the map of [off, off+n) of the extent at disk offset base+off.
	mapRange(ctx context.Context, out *image.ExtentList, base, off, n int64) error
}

type placed struct {
	start, size int64
	ext         extent
}

// Reader is an open VMDK. It implements image.Reader and is safe for
// concurrent use.
type Reader struct {
	desc    *Descriptor
	extents []placed
	size    int64
	closers []io.Closer
}

var _ image.Reader = (*Reader)(nil)

// Open reads the VMDK in r (fileSize bytes): a sparse extent with an
// embedded descriptor, or a text descriptor whose extent files res opens.
func Open(r io.ReaderAt, fileSize int64, res image.Resolver) (*Reader, error) {
	head := make([]byte, min(fileSize, sector))
	if err := image.ReadFull(r, head, 0, "vmdk: header"); err != nil {
		return nil, err
	}
	if bytes.HasPrefix(head, []byte(headerMagic)) {
		sp, err := openSparse(r, fileSize, "")
		if err != nil {
			return nil, err
		}
		v := &Reader{size: int64(sp.h.Capacity) * sector}
		if sp.h.DescriptorOffset != 0 && sp.h.DescriptorSize != 0 {
			n := int64(sp.h.DescriptorSize) * sector
			if sp.h.DescriptorOffset >= uint64(fileSize)/sector {
				return nil, image.Corruptf("vmdk: embedded descriptor at sector %d: past the end of the file", sp.h.DescriptorOffset)
			}
			off := int64(sp.h.DescriptorOffset) * sector
			text := make([]byte, min(n, fileSize-off))
			if err := image.ReadFull(r, text, off, "vmdk: embedded descriptor"); err != nil {
				return nil, err
			}
			d, err := ParseDescriptor(text)
			if err != nil {
				return nil, err
			}
			if err := checkDelta(d); err != nil {
				return nil, err
			}
			v.desc = d
		}
		if v.size > 0 {
			v.extents = []placed{{start: 0, size: v.size, ext: sp}}
		}
		return v, nil
	}
	if fileSize > maxDescriptor {
		return nil, fmt.Errorf("vmdk: no sparse header and too large (%d bytes) for a descriptor: %w", fileSize, image.ErrFormat)
	}
	text := make([]byte, fileSize)
	if err := image.ReadFull(r, text, 0, "vmdk: descriptor"); err != nil {
		return nil, err
	}
	if !image.IsDescriptor(text[:min(len(text), sector)]) {
		return nil, fmt.Errorf("vmdk: neither a sparse extent nor a descriptor: %w", image.ErrFormat)
	}
	d, err := ParseDescriptor(text)
	if err != nil {
		return nil, err
	}
	return openDescriptor(d, res)
}

func checkDelta(d *Descriptor) error {
	if d.ParentCID != noParentCID {
		return image.Unsupportedf("vmdk: delta link (parentCID %08x, parent %q); convert the chain with qemu-img first", d.ParentCID, d.ParentFileNameHint)
	}
	return nil
}

func openDescriptor(d *Descriptor, res image.Resolver) (_ *Reader, err error) {
	if err := checkDelta(d); err != nil {
		return nil, err
	}
	if len(d.Extents) == 0 {
		return nil, image.Corruptf("vmdk: descriptor has no extents")
	}
	v := &Reader{desc: d}
	defer func() {
		if err != nil {
			v.Close()
		}
	}()
	for i, e := range d.Extents {
		size := int64(e.Sectors) * sector
		var ext extent
		switch e.Type {
		case "ZERO":
			ext = zeroExtent{}
		case "FLAT", "VMFS", "SPARSE":
			if res == nil {
				return nil, image.Unsupportedf("vmdk: extent %d (%q): no resolver to open it", i, e.File)
			}
			f, fsize, err := res.OpenFile(e.File)
			if err != nil {
				return nil, fmt.Errorf("vmdk: extent %d (%q): %w", i, e.File, err)
			}
			v.closers = append(v.closers, f)
			if e.Type == "SPARSE" {
				sp, err := openSparse(f, fsize, e.File)
				if err != nil {
					return nil, err
				}
				if int64(sp.h.Capacity)*sector < size {
					return nil, image.Corruptf("vmdk: extent %d (%q): %d sectors in the descriptor, capacity %d", i, e.File, e.Sectors, sp.h.Capacity)
				}
				ext = sp
			} else {
				rr, err := raw.Open(f, fsize)
				if err != nil {
					return nil, err
				}
				ext = &flatExtent{r: rr, off: int64(e.Offset) * sector, name: e.File}
			}
		default:
			return nil, image.Unsupportedf("vmdk: extent %d: type %s", i, e.Type)
		}
		if size > 0 {
			v.extents = append(v.extents, placed{start: v.size, size: size, ext: ext})
		}
		v.size += size
	}
	return v, nil
}

// Descriptor returns the parsed descriptor (embedded or separate), or nil
// for a sparse extent without one.
func (v *Reader) Descriptor() *Descriptor { return v.desc }

// Format implements image.Reader.
func (v *Reader) Format() image.Format { return image.VMDK }

// Size implements image.Reader.
func (v *Reader) Size() int64 { return v.size }

// Close implements image.Reader: it closes the extent files it opened.
func (v *Reader) Close() error {
	var errs []error
	for _, c := range v.closers {
		errs = append(errs, c.Close())
	}
	v.closers = nil
	return errors.Join(errs...)
}

// find returns the index of the extent holding disk offset off.
func (v *Reader) find(off int64) int {
	return sort.Search(len(v.extents), func(i int) bool { return v.extents[i].start+v.extents[i].size > off })
}

// ReadAt implements image.Reader.
func (v *Reader) ReadAt(p []byte, off int64) (int, error) {
	n, eof := image.CheckRead(p, off, v.size)
	if n == 0 {
		return 0, eof
	}
	for pos := 0; pos < n; {
		o := off + int64(pos)
		e := v.extents[v.find(o)]
		k := min(int64(n-pos), e.start+e.size-o)
		if err := e.ext.readAt(p[pos:pos+int(k)], o-e.start); err != nil {
			return pos, err
		}
		pos += int(k)
	}
	return n, eof
}

// Map implements image.Reader.
func (v *Reader) Map(ctx context.Context, off, length int64) ([]image.Extent, error) {
	length, err := image.CheckMap(off, length, v.size)
	if err != nil {
		return nil, err
	}
	var out image.ExtentList
	for o, end := off, off+length; o < end; {
		e := v.extents[v.find(o)]
		k := min(end-o, e.start+e.size-o)
		if err := e.ext.mapRange(ctx, &out, e.start, o-e.start, k); err != nil {
			return nil, err
		}
		o += k
	}
	return out, nil
}

type zeroExtent struct{}

func (zeroExtent) readAt(p []byte, _ int64) error { clear(p); return nil }
func (zeroExtent) mapRange(_ context.Context, out *image.ExtentList, base, off, n int64) error {
	out.Add(base+off, n, image.Zero)
	return nil
}

// flatExtent is raw data at an offset of a file. Bytes past the end of
// the file read as zeros.
type flatExtent struct {
	r    *raw.Reader
	off  int64
	name string
}

func (f *flatExtent) readAt(p []byte, off int64) error {
	o := f.off + off
	avail := max(0, min(int64(len(p)), f.r.Size()-o))
	if avail > 0 {
		if _, err := f.r.ReadAt(p[:avail], o); err != nil && err != io.EOF {
			return fmt.Errorf("vmdk: flat extent %q: %w", f.name, err)
		}
	}
	clear(p[avail:])
	return nil
}

func (f *flatExtent) mapRange(ctx context.Context, out *image.ExtentList, base, off, n int64) error {
	o := f.off + off
	avail := max(0, min(n, f.r.Size()-o))
	if avail > 0 {
		m, err := f.r.Map(ctx, o, avail)
		if err != nil {
			return fmt.Errorf("vmdk: flat extent %q: %w", f.name, err)
		}
		for _, e := range m {
			out.Add(base+off+e.Off-o, e.Len, e.Kind)
		}
	}
	out.Add(base+off+avail, n-avail, image.Hole)
	return nil
}

// sparseExtent is a hosted sparse extent (monolithicSparse,
// streamOptimized, twoGbMaxExtentSparse pieces).
type sparseExtent struct {
	r          io.ReaderAt
	fileSize   int64
	name       string
	h          *SparseHeader
	grainBytes int64
	gd         []uint32

	cache struct {
		sync.Mutex
		tables map[uint32][]uint32
	}
}

const maxCachedGTs = 4096

func openSparse(r io.ReaderAt, fileSize int64, name string) (*sparseExtent, error) {
	b := make([]byte, sector)
	if err := image.ReadFull(r, b, 0, "vmdk: sparse header"); err != nil {
		return nil, err
	}
	h, err := ParseSparseHeader(b)
	if err != nil {
		return nil, err
	}
	if h.GDOffset == GDAtEnd {
		// streamOptimized: footer marker, footer (a header copy), EOS marker.
		if fileSize < 3*sector {
			return nil, image.Corruptf("vmdk: stream-optimized extent of %d bytes: no room for a footer", fileSize)
		}
		m := make([]byte, sector)
		if err := image.ReadFull(r, m, fileSize-3*sector, "vmdk: footer marker"); err != nil {
			return nil, err
		}
		if mk := parseMarker(m); mk.Size != 0 || mk.Type != markerFooter {
			return nil, image.Corruptf("vmdk: footer marker at %d: type %d size %d", fileSize-3*sector, mk.Type, mk.Size)
		}
		if err := image.ReadFull(r, b, fileSize-2*sector, "vmdk: footer"); err != nil {
			return nil, err
		}
		f, err := ParseSparseHeader(b)
		if err != nil {
			return nil, fmt.Errorf("vmdk: footer: %w", err)
		}
		if f.GDOffset == GDAtEnd || f.GrainSize != h.GrainSize || f.NumGTEsPerGT != h.NumGTEsPerGT || f.Capacity != h.Capacity {
			return nil, image.Corruptf("vmdk: footer disagrees with the header")
		}
		h.GDOffset = f.GDOffset
	}
	sp := &sparseExtent{r: r, fileSize: fileSize, name: name, h: h, grainBytes: int64(h.GrainSize) * sector}
	n := h.numGTs()
	if n*4 > image.MaxTableBytes {
		return nil, image.Limitf("vmdk: grain directory of %d entries", n)
	}
	gdOff := h.GDOffset * sector
	if h.GDOffset == 0 || h.GDOffset > uint64(fileSize)/sector || n*4 > uint64(fileSize)-gdOff {
		return nil, image.Corruptf("vmdk: grain directory at sector %d (%d entries): past the end of the file (%d bytes)", h.GDOffset, n, fileSize)
	}
	raw := make([]byte, n*4)
	if err := image.ReadFull(r, raw, int64(gdOff), "vmdk: grain directory"); err != nil {
		return nil, err
	}
	sp.gd = make([]uint32, n)
	gtBytes := uint64(h.NumGTEsPerGT) * 4
	for i := range sp.gd {
		e := binary.LittleEndian.Uint32(raw[i*4:])
		if e != 0 {
			o := uint64(e) * sector
			if o < sector || o > uint64(fileSize) || gtBytes > uint64(fileSize)-o {
				return nil, image.Corruptf("vmdk: grain directory entry %d: grain table at sector %d past the end of the file", i, e)
			}
		}
		sp.gd[i] = e
	}
	sp.cache.tables = make(map[uint32][]uint32)
	return sp, nil
}

// gt returns grain table i, or nil when unallocated.
func (sp *sparseExtent) gt(i uint64) ([]uint32, error) {
	sec := sp.gd[i]
	if sec == 0 {
		return nil, nil
	}
	sp.cache.Lock()
	t, ok := sp.cache.tables[sec]
	sp.cache.Unlock()
	if ok {
		return t, nil
	}
	buf := make([]byte, sp.h.NumGTEsPerGT*4)
	if err := image.ReadFull(sp.r, buf, int64(sec)*sector, "vmdk: grain table"); err != nil {
		return nil, err
	}
	t = make([]uint32, sp.h.NumGTEsPerGT)
	for j := range t {
		t[j] = binary.LittleEndian.Uint32(buf[j*4:])
	}
	sp.cache.Lock()
	if len(sp.cache.tables) >= maxCachedGTs {
		for k := range sp.cache.tables {
			delete(sp.cache.tables, k)
			break
		}
	}
	sp.cache.tables[sec] = t
	sp.cache.Unlock()
	return t, nil
}

type grainKind uint8

const (
	grainUnallocated grainKind = iota
	grainZero
	grainData
)

// lookup returns the state and sector of grain g.
func (sp *sparseExtent) lookup(g int64) (grainKind, uint32, error) {
	gtes := int64(sp.h.NumGTEsPerGT)
	t, err := sp.gt(uint64(g / gtes))
	if err != nil || t == nil {
		return grainUnallocated, 0, err
	}
	e := t[g%gtes]
	switch {
	case e == 0:
		return grainUnallocated, 0, nil
	case e == 1 && sp.h.Flags&flagZeroGrainGTE != 0:
		return grainZero, 0, nil
	case int64(e) >= sp.fileSize/sector+1 || int64(e)*sector >= sp.fileSize:
		return 0, 0, image.Corruptf("vmdk: grain %d: sector %d past the end of the file (%d bytes)", g, e, sp.fileSize)
	}
	return grainData, e, nil
}

func (sp *sparseExtent) readAt(p []byte, off int64) error {
	var gbuf []byte
	for pos := 0; pos < len(p); {
		o := off + int64(pos)
		g, in := o/sp.grainBytes, o%sp.grainBytes
		k := min(int64(len(p)-pos), sp.grainBytes-in)
		dst := p[pos : pos+int(k)]
		kind, sec, err := sp.lookup(g)
		if err != nil {
			return err
		}
		switch {
		case kind != grainData:
			clear(dst)
		case sp.h.Flags&flagCompressed != 0:
			if gbuf == nil {
				gbuf = make([]byte, sp.grainBytes)
			}
			if err := sp.readCompressed(gbuf, g, int64(sec)*sector); err != nil {
				return err
			}
			copy(dst, gbuf[in:])
		default:
			o := int64(sec)*sector + in
			m, err := sp.r.ReadAt(dst, o)
			if m < len(dst) {
				if err != nil && err != io.EOF {
					return fmt.Errorf("vmdk: grain %d: %w", g, err)
				}
				clear(dst[m:])
			}
		}
		pos += int(k)
	}
	return nil
}

// readCompressed inflates grain g stored at file offset off.
func (sp *sparseExtent) readCompressed(dst []byte, g, off int64) error {
	var src []byte
	if sp.h.Flags&flagMarkers != 0 {
		m := make([]byte, 12)
		if err := image.ReadFull(sp.r, m, off, "vmdk: grain marker"); err != nil {
			return err
		}
		size := int64(binary.LittleEndian.Uint32(m[8:]))
		if size == 0 || size > image.MaxCompressedCluster || size > sp.fileSize-off-12 {
			return image.Corruptf("vmdk: grain %d: compressed size %d at offset %d", g, size, off)
		}
		src = make([]byte, size)
		if err := image.ReadFull(sp.r, src, off+12, "vmdk: compressed grain"); err != nil {
			return err
		}
	} else {
		n := min(sp.fileSize-off, sp.grainBytes+sp.grainBytes/2+4096)
		src = make([]byte, n)
		if err := image.ReadFull(sp.r, src, off, "vmdk: compressed grain"); err != nil {
			return err
		}
	}
	zr, err := zlib.NewReader(bytes.NewReader(src))
	if err != nil {
		return image.Corruptf("vmdk: grain %d: %v", g, err)
	}
	defer zr.Close()
	n, err := io.ReadFull(zr, dst)
	if err != nil {
		// The last grain of an extent may be stored cut at the capacity.
		tail := int64(sp.h.Capacity)*sector - g*sp.grainBytes
		if err != io.ErrUnexpectedEOF || int64(n) < tail || tail >= sp.grainBytes {
			return image.Corruptf("vmdk: grain %d: inflates to %d of %d bytes: %v", g, n, len(dst), err)
		}
		clear(dst[n:])
	}
	return nil
}

func (sp *sparseExtent) mapRange(ctx context.Context, out *image.ExtentList, base, off, n int64) error {
	gtes := int64(sp.h.NumGTEsPerGT)
	for o, end := off, off+n; o < end; {
		if err := ctx.Err(); err != nil {
			return err
		}
		g := o / sp.grainBytes
		if sp.gd[g/gtes] == 0 { // a whole unallocated grain table
			tEnd := (g/gtes + 1) * gtes * sp.grainBytes
			k := min(end, tEnd) - o
			out.Add(base+o, k, image.Hole)
			o += k
			continue
		}
		k := min(end-o, sp.grainBytes-o%sp.grainBytes)
		kind, _, err := sp.lookup(g)
		if err != nil {
			return err
		}
		out.Add(base+o, k, [...]image.ExtentKind{image.Hole, image.Zero, image.Data}[kind])
		o += k
	}
	return nil
}
