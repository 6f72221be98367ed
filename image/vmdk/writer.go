package vmdk

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/raw"
)

// Subformat selects the VMDK layout a writer produces (qemu-img's
// subformat option).
type Subformat string

const (
	MonolithicSparse Subformat = "monolithicSparse"
	StreamOptimized  Subformat = "streamOptimized"
	MonolithicFlat   Subformat = "monolithicFlat"
)

// WriterOptions configure NewWriter. Nil means defaults.
type WriterOptions struct {
	// Subformat is MonolithicSparse (default) or StreamOptimized; use
	// NewFlatWriter for MonolithicFlat.
	Subformat Subformat
	// GrainSize in bytes: a power of two from 4 KiB to 1 MiB (default 64 KiB).
	GrainSize int
	// FileName is the name the embedded descriptor gives the extent
	// (default "disk.vmdk"); VMware shows it, readers ignore it.
	FileName string
	// CompressionLevel for streamOptimized grains (compress/zlib levels;
	// default zlib.BestSpeed).
	CompressionLevel int
}

// Validate checks the options and fills in defaults.
func (o *WriterOptions) Validate() error {
	if o.Subformat == "" {
		o.Subformat = MonolithicSparse
	}
	if o.GrainSize == 0 {
		o.GrainSize = 64 << 10
	}
	if o.FileName == "" {
		o.FileName = "disk.vmdk"
	}
	if o.CompressionLevel == 0 {
		o.CompressionLevel = zlib.BestSpeed
	}
	if o.Subformat != MonolithicSparse && o.Subformat != StreamOptimized {
		return image.Unsupportedf("vmdk: writer subformat %q", o.Subformat)
	}
	if o.GrainSize < 4096 || o.GrainSize > 1<<20 || o.GrainSize&(o.GrainSize-1) != 0 {
		return image.Unsupportedf("vmdk: grain size %d: must be a power of two from 4 KiB to 1 MiB", o.GrainSize)
	}
	if o.CompressionLevel < zlib.HuffmanOnly || o.CompressionLevel > zlib.BestCompression {
		return image.Unsupportedf("vmdk: compression level %d", o.CompressionLevel)
	}
	return nil
}

const (
	descriptorSectors = 20
	gtesPerGT         = 512
	gtSectors         = gtesPerGT * 4 / sector
)

// Writer writes a monolithicSparse or streamOptimized VMDK. It implements
// image.Writer.
type Writer struct {
	s      *image.Sink
	opts   WriterOptions
	size   int64
	h      SparseHeader
	grain  int64 // bytes
	gt     []uint32
	ck     image.Chunker
	done   bool
	stream struct {
		gd     []uint32
		curGT  int64 // index of the grain table being filled, -1 none
		zbuf   bytes.Buffer
		zw     *zlib.Writer
		sector []byte
	}
	// monolithicSparse layout, in sectors.
	rgdSec, rgtSec, gdSec, gtSec int64
}

var _ image.Writer = (*Writer)(nil)

// NewWriter starts a sparse VMDK of size bytes (rounded up to whole
// sectors) on w. MonolithicSparse needs w to implement io.WriterAt;
// StreamOptimized writes strictly sequentially.
func NewWriter(w io.Writer, size int64, opts *WriterOptions) (*Writer, error) {
	var o WriterOptions
	if opts != nil {
		o = *opts
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if size < 0 || size > 2<<40 {
		return nil, image.Limitf("vmdk: virtual size %d (sparse extents hold at most 2 TiB)", size)
	}
	v := &Writer{s: image.NewSink(w), opts: o, size: size, grain: int64(o.GrainSize)}
	capacity := (size + sector - 1) / sector
	v.h = SparseHeader{
		Version:          1,
		Flags:            flagNewlineTest,
		Capacity:         uint64(capacity),
		GrainSize:        uint64(v.grain / sector),
		DescriptorOffset: 1,
		DescriptorSize:   descriptorSectors,
		NumGTEsPerGT:     gtesPerGT,
	}
	numGTs := int64(v.h.numGTs())
	grainSecs := v.grain / sector
	roundGrain := func(sec int64) int64 { return (sec + grainSecs - 1) / grainSecs * grainSecs }
	if o.Subformat == StreamOptimized {
		v.h.Version = 3
		v.h.Flags |= flagCompressed | flagMarkers
		v.h.CompressAlgorithm = compressionDeflat
		v.h.GDOffset = GDAtEnd
		v.h.OverHead = uint64(roundGrain(1 + descriptorSectors))
		v.stream.gd = make([]uint32, numGTs)
		v.stream.curGT = -1
		zw, err := zlib.NewWriterLevel(&v.stream.zbuf, o.CompressionLevel)
		if err != nil {
			return nil, err
		}
		v.stream.zw = zw
		v.stream.sector = make([]byte, sector)
	} else {
		if !v.s.Seekable() {
			return nil, fmt.Errorf("vmdk: monolithicSparse writer: %w (use streamOptimized)", image.ErrNotSeekable)
		}
		v.h.Flags |= flagRedundantGT
		gdSecs := (numGTs*4 + sector - 1) / sector
		v.rgdSec = 1 + descriptorSectors
		v.rgtSec = v.rgdSec + gdSecs
		v.gdSec = v.rgtSec + numGTs*gtSectors
		v.gtSec = v.gdSec + gdSecs
		v.h.RGDOffset = uint64(v.rgdSec)
		v.h.GDOffset = uint64(v.gdSec)
		v.h.OverHead = uint64(roundGrain(v.gtSec + numGTs*gtSectors))
	}
	v.gt = make([]uint32, numGTs*gtesPerGT)
	// Header and descriptor.
	desc := formatDescriptor(rand.Uint32(), string(o.Subformat), uint64(capacity), "SPARSE", o.FileName)
	if len(desc) > descriptorSectors*sector {
		return nil, image.Limitf("vmdk: descriptor of %d bytes", len(desc))
	}
	head := make([]byte, (1+descriptorSectors)*sector)
	v.h.Append(head[:0])
	copy(head[sector:], desc)
	if err := v.s.Write(head); err != nil {
		return nil, err
	}
	if err := v.s.Skip(int64(v.h.OverHead)*sector - v.s.Pos()); err != nil {
		return nil, err
	}
	v.ck = image.Chunker{ClusterSize: v.grain, Size: capacity * sector, Emit: v.emit}
	if o.Subformat == StreamOptimized {
		v.ck.Emit = v.emitStream
	}
	return v, nil
}

// Size implements image.Writer.
func (v *Writer) Size() int64 { return v.size }

// WriteAt implements image.Writer.
func (v *Writer) WriteAt(p []byte, off int64) (int, error) {
	if v.done {
		return 0, image.ErrClosed
	}
	n, err := v.ck.WriteAt(p, off)
	if err != nil {
		return n, fmt.Errorf("vmdk: %w", err)
	}
	return n, nil
}

func (v *Writer) emit(g int64, data []byte) error {
	v.gt[g] = uint32(v.s.Pos() / sector)
	return v.s.Write(data)
}

func (v *Writer) emitStream(g int64, data []byte) error {
	if t := g / gtesPerGT; t != v.stream.curGT {
		if err := v.flushGT(); err != nil {
			return err
		}
		v.stream.curGT = t
	}
	zb := &v.stream.zbuf
	zb.Reset()
	// Marker: LBA of the grain and compressed size; the data follows.
	var m [12]byte
	binary.LittleEndian.PutUint64(m[:], uint64(g*v.grain/sector))
	zb.Write(m[:])
	v.stream.zw.Reset(zb)
	if _, err := v.stream.zw.Write(data); err != nil {
		return err
	}
	if err := v.stream.zw.Close(); err != nil {
		return err
	}
	b := zb.Bytes()
	binary.LittleEndian.PutUint32(b[8:], uint32(len(b)-12))
	if pad := (sector - len(b)%sector) % sector; pad > 0 {
		zb.Write(make([]byte, pad))
		b = zb.Bytes()
	}
	v.gt[g] = uint32(v.s.Pos() / sector)
	return v.s.Write(b)
}

// writeMarker writes a metadata marker sector.
func (v *Writer) writeMarker(sectors uint64, typ uint32) error {
	b := v.stream.sector
	clear(b)
	binary.LittleEndian.PutUint64(b, sectors)
	binary.LittleEndian.PutUint32(b[12:], typ)
	return v.s.Write(b)
}

// flushGT writes the grain table being filled (streamOptimized).
func (v *Writer) flushGT() error {
	t := v.stream.curGT
	if t < 0 {
		return nil
	}
	v.stream.curGT = -1
	if err := v.writeMarker(gtSectors, markerGT); err != nil {
		return err
	}
	v.stream.gd[t] = uint32(v.s.Pos() / sector)
	return v.s.Write(u32s(v.gt[t*gtesPerGT : (t+1)*gtesPerGT]))
}

func u32s(x []uint32) []byte {
	b := make([]byte, (len(x)*4+sector-1)/sector*sector)
	for i, e := range x {
		binary.LittleEndian.PutUint32(b[i*4:], e)
	}
	return b
}

// Close implements image.Writer.
func (v *Writer) Close() error {
	if v.done {
		return image.ErrClosed
	}
	v.done = true
	if err := v.ck.Flush(); err != nil {
		return fmt.Errorf("vmdk: %w", err)
	}
	if v.opts.Subformat == StreamOptimized {
		return v.closeStream()
	}
	numGTs := int64(len(v.gt) / gtesPerGT)
	for _, copySec := range [][2]int64{{v.rgdSec, v.rgtSec}, {v.gdSec, v.gtSec}} {
		gd := make([]uint32, numGTs)
		for i := range gd {
			gd[i] = uint32(copySec[1] + int64(i)*gtSectors)
		}
		if err := v.s.WriteAtPos(u32s(gd), copySec[0]*sector); err != nil {
			return err
		}
		if err := v.s.WriteAtPos(u32s(v.gt), copySec[1]*sector); err != nil {
			return err
		}
	}
	return v.s.Finish(v.s.Pos())
}

func (v *Writer) closeStream() error {
	if err := v.flushGT(); err != nil {
		return err
	}
	gd := u32s(v.stream.gd)
	if err := v.writeMarker(uint64(len(gd)/sector), markerGD); err != nil {
		return err
	}
	footer := v.h
	footer.GDOffset = uint64(v.s.Pos() / sector)
	if err := v.s.Write(gd); err != nil {
		return err
	}
	if err := v.writeMarker(1, markerFooter); err != nil {
		return err
	}
	if err := v.s.Write(footer.Append(nil)); err != nil {
		return err
	}
	return v.writeMarker(0, markerEOS)
}

// FlatWriter writes a monolithicFlat VMDK: a descriptor file and a raw
// extent file. It implements image.Writer.
type FlatWriter struct {
	*raw.Writer
}

// NewFlatWriter writes the descriptor of a monolithicFlat VMDK of size
// bytes (rounded up to whole sectors) to desc, naming the extent
// extentName (relative to the descriptor's directory), and returns a
// writer of the extent data to extent.
func NewFlatWriter(desc io.Writer, extentName string, extent io.Writer, size int64) (*FlatWriter, error) {
	if size < 0 || size > image.MaxVirtualSize {
		return nil, image.Limitf("vmdk: virtual size %d", size)
	}
	if extentName == "" || bytes.ContainsAny([]byte(extentName), "\"\n\r\x00") {
		return nil, fmt.Errorf("vmdk: extent name %q: %w", extentName, image.ErrUnsupported)
	}
	sectors := (size + sector - 1) / sector
	if _, err := desc.Write(formatDescriptor(rand.Uint32(), string(MonolithicFlat), uint64(sectors), "FLAT", extentName)); err != nil {
		return nil, fmt.Errorf("vmdk: write descriptor: %w", err)
	}
	w, err := raw.NewWriter(extent, sectors*sector)
	if err != nil {
		return nil, err
	}
	return &FlatWriter{Writer: w}, nil
}
