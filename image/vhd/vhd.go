package vhd

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/raw"
)

// Reader is an open VHD. It implements image.Reader and is safe for
// concurrent use.
type Reader struct {
	r        io.ReaderAt
	fileSize int64
	footer   *Footer
	size     int64

	// fixed disks
	data     *raw.Reader
	dataSize int64

	// dynamic disks
	dyn        *DynamicHeader
	bat        []uint32
	blockSize  int64
	bitmapSize int64
	cache      struct {
		sync.Mutex
		bitmaps map[uint32][]byte
	}
}

var _ image.Reader = (*Reader)(nil)

const maxCachedBitmaps = 8192

// Open reads the VHD in r (fileSize bytes).
func Open(r io.ReaderAt, fileSize int64) (*Reader, error) {
	if fileSize < footerSize {
		return nil, image.Corruptf("vhd: file of %d bytes: too short for a footer", fileSize)
	}
	b := make([]byte, footerSize)
	if err := image.ReadFull(r, b, fileSize-footerSize, "vhd: footer"); err != nil {
		return nil, err
	}
	f, err := ParseFooter(b)
	if err != nil {
		// A dynamic disk keeps a copy of the footer at the start.
		if err2 := image.ReadFull(r, b, 0, "vhd: footer copy"); err2 != nil {
			return nil, err
		}
		f2, err2 := ParseFooter(b)
		if err2 != nil || f2.DiskType != diskDynamic {
			return nil, err
		}
		f = f2
	}
	v := &Reader{r: r, fileSize: fileSize, footer: f, size: f.VirtualSize()}
	if f.DiskType == diskFixed {
		v.dataSize = fileSize - footerSize
		if v.data, err = raw.Open(r, v.dataSize); err != nil {
			return nil, err
		}
		return v, nil
	}
	return v, v.openDynamic()
}

func (v *Reader) openDynamic() error {
	f := v.footer
	if f.DataOffset == noDataOffset || f.DataOffset > uint64(v.fileSize) || headerSize > uint64(v.fileSize)-f.DataOffset {
		return image.Corruptf("vhd: dynamic header offset 0x%x: past the end of the file (%d bytes)", f.DataOffset, v.fileSize)
	}
	b := make([]byte, headerSize)
	if err := image.ReadFull(v.r, b, int64(f.DataOffset), "vhd: dynamic header"); err != nil {
		return err
	}
	h, err := ParseDynamicHeader(b)
	if err != nil {
		return err
	}
	v.dyn = h
	v.blockSize = int64(h.BlockSize)
	v.bitmapSize = (v.blockSize/512/8 + 511) &^ 511
	need := (v.size + v.blockSize - 1) / v.blockSize
	if int64(h.MaxTableEntries) < need {
		return image.Corruptf("vhd: block allocation table has %d entries, the %d-byte disk needs %d", h.MaxTableEntries, v.size, need)
	}
	batBytes := uint64(h.MaxTableEntries) * 4
	if h.TableOffset > uint64(v.fileSize) || batBytes > uint64(v.fileSize)-h.TableOffset {
		return image.Corruptf("vhd: block allocation table at 0x%x (%d entries): past the end of the file (%d bytes)", h.TableOffset, h.MaxTableEntries, v.fileSize)
	}
	if h.TableOffset < f.DataOffset+headerSize && h.TableOffset+batBytes > f.DataOffset {
		return image.Corruptf("vhd: block allocation table at 0x%x overlaps the dynamic header", h.TableOffset)
	}
	raw := make([]byte, batBytes)
	if err := image.ReadFull(v.r, raw, int64(h.TableOffset), "vhd: block allocation table"); err != nil {
		return err
	}
	v.bat = make([]uint32, need)
	for i := range v.bat {
		e := binary.BigEndian.Uint32(raw[i*4:])
		if e != unallocated {
			o := int64(e) * 512
			if o+v.bitmapSize > v.fileSize {
				return image.Corruptf("vhd: block allocation table entry %d: block at sector %d past the end of the file (%d bytes)", i, e, v.fileSize)
			}
			if uint64(o) < h.TableOffset+batBytes && uint64(o+v.bitmapSize+v.blockSize) > h.TableOffset {
				return image.Corruptf("vhd: block allocation table entry %d: block at sector %d overlaps the table", i, e)
			}
		}
		v.bat[i] = e
	}
	v.cache.bitmaps = make(map[uint32][]byte)
	return nil
}

// Footer returns the decoded footer.
func (v *Reader) Footer() *Footer { return v.footer }

// Format implements image.Reader.
func (v *Reader) Format() image.Format { return image.VHD }

// Size implements image.Reader.
func (v *Reader) Size() int64 { return v.size }

// Close implements image.Reader.
func (v *Reader) Close() error { return nil }

func (v *Reader) bitmap(sec uint32) ([]byte, error) {
	v.cache.Lock()
	bm, ok := v.cache.bitmaps[sec]
	v.cache.Unlock()
	if ok {
		return bm, nil
	}
	bm = make([]byte, v.bitmapSize)
	if err := image.ReadFull(v.r, bm, int64(sec)*512, "vhd: sector bitmap"); err != nil {
		return nil, err
	}
	v.cache.Lock()
	if len(v.cache.bitmaps) >= maxCachedBitmaps {
		for k := range v.cache.bitmaps {
			delete(v.cache.bitmaps, k)
			break
		}
	}
	v.cache.bitmaps[sec] = bm
	v.cache.Unlock()
	return bm, nil
}

// runs calls fn for the maximal runs of sectors in [first, first+n) of a
// block whose bitmap bits are equal (bit set = stored in this image).
func runs(bm []byte, first, n int64, fn func(start, count int64, set bool) error) error {
	// Fast path: a whole-byte range with every sector present (what qemu
	// and most writers produce).
	if first%8 == 0 && n%8 == 0 && allOnes(bm[first/8:(first+n)/8]) {
		return fn(first, n, true)
	}
	for s := first; s < first+n; {
		set := bm[s>>3]&(0x80>>(s&7)) != 0
		e := s + 1
		for e < first+n && (bm[e>>3]&(0x80>>(e&7)) != 0) == set {
			// Skip whole bytes that are all set or all clear.
			if e&7 == 0 && e+8 <= first+n && (bm[e>>3] == 0xff && set || bm[e>>3] == 0 && !set) {
				e += 8
				continue
			}
			e++
		}
		if err := fn(s, e-s, set); err != nil {
			return err
		}
		s = e
	}
	return nil
}

// ReadAt implements image.Reader.
func (v *Reader) ReadAt(p []byte, off int64) (int, error) {
	n, eof := image.CheckRead(p, off, v.size)
	if n == 0 {
		return 0, eof
	}
	p = p[:n]
	if v.dyn == nil {
		avail := max(0, min(int64(n), v.dataSize-off))
		if avail > 0 {
			if _, err := v.data.ReadAt(p[:avail], off); err != nil && err != io.EOF {
				return 0, fmt.Errorf("vhd: %w", err)
			}
		}
		clear(p[avail:])
		return n, eof
	}
	for pos := int64(0); pos < int64(n); {
		o := off + pos
		blk, in := o/v.blockSize, o%v.blockSize
		k := min(int64(n)-pos, v.blockSize-in)
		dst := p[pos : pos+k]
		if err := v.readBlock(dst, blk, in); err != nil {
			return int(pos), err
		}
		pos += k
	}
	return n, eof
}

func (v *Reader) readBlock(dst []byte, blk, in int64) error {
	sec := v.bat[blk]
	if sec == unallocated {
		clear(dst)
		return nil
	}
	bm, err := v.bitmap(sec)
	if err != nil {
		return err
	}
	base := int64(sec)*512 + v.bitmapSize
	// Reads are sector aligned in the bitmap; dst may start mid-sector.
	first, last := in/512, (in+int64(len(dst))-1)/512
	return runs(bm, first, last-first+1, func(s, c int64, set bool) error {
		lo := max(s*512, in) - in
		hi := min((s+c)*512, in+int64(len(dst))) - in
		part := dst[lo:hi]
		if !set {
			clear(part)
			return nil
		}
		m, err := v.r.ReadAt(part, base+in+lo)
		if m < len(part) {
			if err != nil && err != io.EOF {
				return fmt.Errorf("vhd: block %d: %w", blk, err)
			}
			clear(part[m:])
		}
		return nil
	})
}

// Map implements image.Reader.
func (v *Reader) Map(ctx context.Context, off, length int64) ([]image.Extent, error) {
	length, err := image.CheckMap(off, length, v.size)
	if err != nil {
		return nil, err
	}
	var out image.ExtentList
	if v.dyn == nil {
		avail := max(0, min(length, v.dataSize-off))
		if avail > 0 {
			m, err := v.data.Map(ctx, off, avail)
			if err != nil {
				return nil, fmt.Errorf("vhd: %w", err)
			}
			for _, e := range m {
				out.Add(e.Off, e.Len, e.Kind)
			}
		}
		out.Add(off+avail, length-avail, image.Hole)
		return out, nil
	}
	for o, end := off, off+length; o < end; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		blk, in := o/v.blockSize, o%v.blockSize
		k := min(end-o, v.blockSize-in)
		sec := v.bat[blk]
		if sec == unallocated {
			out.Add(o, k, image.Hole)
			o += k
			continue
		}
		bm, err := v.bitmap(sec)
		if err != nil {
			return nil, err
		}
		first, last := in/512, (in+k-1)/512
		err = runs(bm, first, last-first+1, func(s, c int64, set bool) error {
			lo, hi := max(s*512, in), min((s+c)*512, in+k)
			kind := image.Hole
			if set {
				kind = image.Data
			}
			out.Add(blk*v.blockSize+lo, hi-lo, kind)
			return nil
		})
		if err != nil {
			return nil, err
		}
		o += k
	}
	return out, nil
}

// Type selects the VHD a writer produces.
type Type string

const (
	Fixed   Type = "fixed"
	Dynamic Type = "dynamic"
)

// WriterOptions configure NewWriter. Nil means defaults.
type WriterOptions struct {
	// Type is Dynamic (default) or Fixed.
	Type Type
	// BlockSize of a dynamic disk: a power of two from 512 KiB to 256 MiB
	// (default 2 MiB).
	BlockSize int
}

// Validate checks the options and fills in defaults.
func (o *WriterOptions) Validate() error {
	if o.Type == "" {
		o.Type = Dynamic
	}
	if o.BlockSize == 0 {
		o.BlockSize = 2 << 20
	}
	if o.Type != Fixed && o.Type != Dynamic {
		return image.Unsupportedf("vhd: writer type %q", o.Type)
	}
	if o.BlockSize < 512<<10 || o.BlockSize > maxBlockSize || o.BlockSize&(o.BlockSize-1) != 0 {
		return image.Unsupportedf("vhd: block size %d", o.BlockSize)
	}
	return nil
}

// maxSize is the largest VHD (2040 GiB, the specification's limit).
const maxSize = 2040 << 30

// creatorApp is the creator application written in the footer. Readers
// decide from it whether the current size field or the CHS geometry gives
// the disk size (see Footer.VirtualSize); Lunway writes exact sizes, which
// is what Hyper-V's "win " announces to every implementation.
const creatorApp = "win "

// Writer writes a VHD. It implements image.Writer.
type Writer struct {
	s      *image.Sink
	opts   WriterOptions
	size   int64
	footer []byte
	done   bool

	raw *raw.Writer // fixed

	ck        image.Chunker // dynamic
	bat       []uint32
	batOff    int64
	bitmapBuf []byte
}

var _ image.Writer = (*Writer)(nil)

// NewWriter starts a VHD of size bytes (rounded up to whole sectors) on
// w. A fixed disk is written sequentially; a dynamic one needs
// io.WriterAt.
func NewWriter(w io.Writer, size int64, opts *WriterOptions) (*Writer, error) {
	var o WriterOptions
	if opts != nil {
		o = *opts
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	size = (size + 511) &^ 511
	if size < 0 || size > maxSize {
		return nil, image.Limitf("vhd: virtual size %d (VHD holds at most 2040 GiB)", size)
	}
	v := &Writer{s: image.NewSink(w), opts: o, size: size}
	f := Footer{
		Features:       2,
		Version:        0x00010000,
		DataOffset:     noDataOffset,
		Timestamp:      uint32(time.Now().Unix() - 946684800),
		CreatorApp:     [4]byte([]byte(creatorApp)),
		CreatorVersion: 0x00010000,
		CreatorHostOS:  0x5769326b, // "Wi2k", as most tools write
		OriginalSize:   uint64(size),
		CurrentSize:    uint64(size),
		DiskType:       diskFixed,
	}
	f.Cylinders, f.Heads, f.SectorsPerCyl = Geometry(size)
	if _, err := rand.Read(f.UniqueID[:]); err != nil {
		return nil, err
	}
	if o.Type == Fixed {
		v.footer = f.Append(nil)
		rw, err := raw.NewWriter(w, size)
		if err != nil {
			return nil, err
		}
		v.raw = rw
		return v, nil
	}
	if !v.s.Seekable() {
		return nil, fmt.Errorf("vhd: dynamic writer: %w (use a fixed disk)", image.ErrNotSeekable)
	}
	f.DiskType = diskDynamic
	f.DataOffset = footerSize
	v.footer = f.Append(nil)
	bs := int64(o.BlockSize)
	entries := (size + bs - 1) / bs
	v.bat = make([]uint32, entries)
	for i := range v.bat {
		v.bat[i] = unallocated
	}
	v.batOff = footerSize + headerSize
	h := DynamicHeader{TableOffset: uint64(v.batOff), Version: 0x00010000, MaxTableEntries: uint32(entries), BlockSize: uint32(bs)}
	head := append(append([]byte(nil), v.footer...), h.Append(nil)...)
	if err := v.s.Write(head); err != nil {
		return nil, err
	}
	batBytes := (entries*4 + 511) &^ 511
	if err := v.s.Write(v.batBytes(batBytes)); err != nil { // all unallocated for now
		return nil, err
	}
	v.bitmapBuf = make([]byte, (bs/512/8+511)&^511)
	for i := range bs / 512 / 8 {
		v.bitmapBuf[i] = 0xff
	}
	v.ck = image.Chunker{ClusterSize: bs, Size: size, Emit: v.emit}
	return v, nil
}

func (v *Writer) batBytes(n int64) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 0xff
	}
	for i, e := range v.bat {
		binary.BigEndian.PutUint32(b[i*4:], e)
	}
	return b
}

// Size implements image.Writer.
func (v *Writer) Size() int64 { return v.size }

// WriteAt implements image.Writer.
func (v *Writer) WriteAt(p []byte, off int64) (int, error) {
	if v.done {
		return 0, image.ErrClosed
	}
	if v.raw != nil {
		return v.raw.WriteAt(p, off)
	}
	n, err := v.ck.WriteAt(p, off)
	if err != nil {
		return n, fmt.Errorf("vhd: %w", err)
	}
	return n, nil
}

func (v *Writer) emit(blk int64, data []byte) error {
	// Blocks start on a sector boundary; the bitmap marks every sector.
	v.bat[blk] = uint32(v.s.Pos() / 512)
	if err := v.s.Write(v.bitmapBuf); err != nil {
		return err
	}
	return v.s.WriteSparse(data)
}

// Close implements image.Writer.
func (v *Writer) Close() error {
	if v.done {
		return image.ErrClosed
	}
	v.done = true
	if v.raw != nil {
		if err := v.raw.Close(); err != nil {
			return err
		}
		// The footer follows the data written by the raw writer, which
		// shares the destination.
		if v.s.Seekable() {
			return v.s.WriteAtPos(v.footer, v.size)
		}
		return v.s.Write(v.footer)
	}
	if err := v.ck.Flush(); err != nil {
		return fmt.Errorf("vhd: %w", err)
	}
	if err := v.s.WriteAtPos(v.batBytes(int64(len(v.bat))*4), v.batOff); err != nil {
		return err
	}
	return v.s.Write(v.footer)
}

func allOnes(b []byte) bool {
	for _, x := range b {
		if x != 0xff {
			return false
		}
	}
	return true
}
