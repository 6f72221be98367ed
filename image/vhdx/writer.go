package vhdx

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"unicode/utf16"

	"github.com/lunway/lunway/image"
)

// Type selects the VHDX a writer produces.
type Type string

const (
	Fixed   Type = "fixed"
	Dynamic Type = "dynamic"
)

// WriterOptions configure NewWriter. Nil means defaults.
type WriterOptions struct {
	// Type is Dynamic (default) or Fixed.
	Type Type
	// BlockSize is a power of two from 1 MiB to 256 MiB (default 8 MiB;
	// smaller blocks keep sparse disks smaller, larger ones keep the BAT
	// small).
	BlockSize int
	// LogicalSectorSize is 512 (default) or 4096.
	LogicalSectorSize int
}

// Validate checks the options and fills in defaults.
func (o *WriterOptions) Validate() error {
	if o.Type == "" {
		o.Type = Dynamic
	}
	if o.BlockSize == 0 {
		o.BlockSize = 8 * mib
	}
	if o.LogicalSectorSize == 0 {
		o.LogicalSectorSize = 512
	}
	if o.Type != Fixed && o.Type != Dynamic {
		return image.Unsupportedf("vhdx: writer type %q", o.Type)
	}
	if o.BlockSize < minBlockSize || o.BlockSize > maxBlockSize || o.BlockSize&(o.BlockSize-1) != 0 {
		return image.Unsupportedf("vhdx: block size %d", o.BlockSize)
	}
	if o.LogicalSectorSize != 512 && o.LogicalSectorSize != 4096 {
		return image.Unsupportedf("vhdx: logical sector size %d", o.LogicalSectorSize)
	}
	return nil
}

// File layout the writer produces.
const (
	logOffset      = 1 * mib
	logLength      = 1 * mib
	metadataOffset = 2 * mib
	metadataLength = 1 * mib
	batOffset      = 3 * mib
)

// Writer writes a VHDX. It implements image.Writer.
type Writer struct {
	s         *image.Sink
	opts      WriterOptions
	size      int64
	blockSize int64
	ratio     uint64
	bat       []uint64 // all entries, payload and sector bitmap
	batLen    int64
	dataStart int64
	ck        image.Chunker
	done      bool
}

var _ image.Writer = (*Writer)(nil)

// NewWriter starts a VHDX of size bytes (rounded up to whole logical
// sectors) on w. A fixed disk is written sequentially; a dynamic one
// needs io.WriterAt.
func NewWriter(w io.Writer, size int64, opts *WriterOptions) (*Writer, error) {
	var o WriterOptions
	if opts != nil {
		o = *opts
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	ls := int64(o.LogicalSectorSize)
	size = (size + ls - 1) / ls * ls
	if size < 0 || size > image.MaxVirtualSize {
		return nil, image.Limitf("vhdx: virtual size %d", size)
	}
	v := &Writer{s: image.NewSink(w), opts: o, size: size, blockSize: int64(o.BlockSize)}
	if o.Type == Dynamic && !v.s.Seekable() {
		return nil, fmt.Errorf("vhdx: dynamic writer: %w (use a fixed disk)", image.ErrNotSeekable)
	}
	v.ratio = chunkRatio(uint32(o.BlockSize), uint32(o.LogicalSectorSize))
	blocks := uint64((size + v.blockSize - 1) / v.blockSize)
	n := batEntries(blocks, v.ratio)
	if n*8 > image.MaxTableBytes {
		return nil, image.Limitf("vhdx: BAT of %d entries (use a larger block size)", n)
	}
	v.bat = make([]uint64, n)
	v.batLen = max(1*mib, (int64(n)*8+mib-1)/mib*mib)
	v.dataStart = batOffset + v.batLen
	if o.Type == Fixed {
		for i := uint64(0); i < blocks; i++ {
			off := uint64(v.dataStart) + i*uint64(v.blockSize)
			v.bat[batIndex(i, v.ratio)] = off/mib<<20 | payloadFullyPresent
		}
	}
	head, err := v.headerSection()
	if err != nil {
		return nil, err
	}
	if err := v.s.Write(head); err != nil {
		return nil, err
	}
	if o.Type == Fixed {
		if err := v.s.Write(v.batBytes()); err != nil {
			return nil, err
		}
	} else if err := v.s.Skip(v.dataStart - v.s.Pos()); err != nil { // BAT written in Close
		return nil, err
	}
	v.ck = image.Chunker{ClusterSize: v.blockSize, Size: size, Emit: v.emit}
	return v, nil
}

// headerSection returns everything before the BAT: file identifier,
// headers, region tables, the (empty) log and the metadata region.
func (v *Writer) headerSection() ([]byte, error) {
	b := make([]byte, batOffset)
	copy(b, fileIDSignature)
	for i, c := range utf16.Encode([]rune("Lunway")) {
		binary.LittleEndian.PutUint16(b[8+2*i:], c)
	}
	var fw, dw GUID
	if _, err := rand.Read(fw[:]); err != nil {
		return nil, err
	}
	if _, err := rand.Read(dw[:]); err != nil {
		return nil, err
	}
	for i, off := range []int{header1Offset, header2Offset} {
		h := Header{Sequence: uint64(i + 1), FileWriteGUID: fw, DataWriteGUID: dw, Version: 1, LogLength: logLength, LogOffset: logOffset}
		h.Append(b[off:off])
	}
	regions := []Region{
		{GUID: guidBAT, Offset: batOffset, Length: uint32(v.batLen), Required: true},
		{GUID: guidMetadata, Offset: metadataOffset, Length: metadataLength, Required: true},
	}
	appendRegionTable(b[region1Offset:region1Offset], regions)
	appendRegionTable(b[region2Offset:region2Offset], regions)
	// Metadata: the table, then the items from 64 KiB on.
	m := b[metadataOffset : metadataOffset+metadataLength]
	le := binary.LittleEndian
	copy(m, "metadata")
	type item struct {
		g     GUID
		data  []byte
		flags uint32 // IsUser 1, IsVirtualDisk 2, IsRequired 4
	}
	var diskID GUID
	if _, err := rand.Read(diskID[:]); err != nil {
		return nil, err
	}
	fp := le.AppendUint32(nil, uint32(v.blockSize))
	var leave uint32
	if v.opts.Type == Fixed {
		leave = 1 // LeaveBlocksAllocated
	}
	fp = le.AppendUint32(fp, leave)
	items := []item{
		{guidFileParameters, fp, 4},
		{guidVirtualSize, le.AppendUint64(nil, uint64(v.size)), 2 | 4},
		{guidPage83, diskID[:], 2 | 4},
		{guidLogicalSector, le.AppendUint32(nil, uint32(v.opts.LogicalSectorSize)), 2 | 4},
		{guidPhysicalSector, le.AppendUint32(nil, 4096), 2 | 4},
	}
	le.PutUint16(m[10:], uint16(len(items)))
	off := uint32(metadataTableBytes)
	for i, it := range items {
		e := m[32+32*i:]
		copy(e, it.g[:])
		le.PutUint32(e[16:], off)
		le.PutUint32(e[20:], uint32(len(it.data)))
		le.PutUint32(e[24:], it.flags)
		copy(m[off:], it.data)
		off += uint32(len(it.data)+7) &^ 7
	}
	return b, nil
}

func (v *Writer) batBytes() []byte {
	b := make([]byte, v.batLen)
	for i, e := range v.bat {
		binary.LittleEndian.PutUint64(b[i*8:], e)
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
	if v.opts.Type == Fixed {
		// Payload blocks are contiguous: virtual offset + dataStart.
		if off < v.s.Pos()-v.dataStart {
			return 0, fmt.Errorf("vhdx: %w: offset %d", image.ErrOrder, off)
		}
		if off < 0 || int64(len(p)) > v.size-off {
			return 0, fmt.Errorf("vhdx: %w: write of %d bytes at %d", image.ErrOutOfRange, len(p), off)
		}
		if err := v.s.Skip(v.dataStart + off - v.s.Pos()); err != nil {
			return 0, err
		}
		if v.s.Seekable() && image.IsZero(p) {
			return len(p), v.s.Skip(int64(len(p)))
		}
		return len(p), v.s.Write(p)
	}
	n, err := v.ck.WriteAt(p, off)
	if err != nil {
		return n, fmt.Errorf("vhdx: %w", err)
	}
	return n, nil
}

func (v *Writer) emit(blk int64, data []byte) error {
	off := v.s.Pos() // always 1 MiB aligned: blocks are whole MiB
	v.bat[batIndex(uint64(blk), v.ratio)] = uint64(off)/mib<<20 | payloadFullyPresent
	return v.s.WriteSparse(data)
}

// Close implements image.Writer.
func (v *Writer) Close() error {
	if v.done {
		return image.ErrClosed
	}
	v.done = true
	blocks := (v.size + v.blockSize - 1) / v.blockSize
	if v.opts.Type == Fixed {
		end := v.dataStart + blocks*v.blockSize
		if err := v.s.Skip(end - v.s.Pos()); err != nil {
			return err
		}
		return v.s.Finish(end)
	}
	if err := v.ck.Flush(); err != nil {
		return fmt.Errorf("vhdx: %w", err)
	}
	if err := v.s.WriteAtPos(v.batBytes(), batOffset); err != nil {
		return err
	}
	return v.s.Finish(v.s.Pos())
}
