package vhdx

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/lunway/lunway/image"
)

// Reader is an open VHDX. It implements image.Reader and is safe for
// concurrent use.
type Reader struct {
	r             io.ReaderAt // the file, or the replayed overlay
	fileSize      int64
	header        *Header
	replayed      int // log entries replayed
	size          int64
	blockSize     int64
	logicalSector uint32
	physSector    uint32
	fixed         bool // LeaveBlocksAllocated
	ratio         uint64
	bat           []uint64 // payload entries only, by block
}

var _ image.Reader = (*Reader)(nil)

// Open reads the VHDX in r (fileSize bytes), replaying a non-empty log in
// memory.
func Open(r io.ReaderAt, fileSize int64) (*Reader, error) {
	if fileSize < 1*mib {
		return nil, image.Corruptf("vhdx: file of %d bytes: shorter than the 1 MiB header section", fileSize)
	}
	b := make([]byte, regionBytes)
	if err := image.ReadFull(r, b[:8], 0, "vhdx: file identifier"); err != nil {
		return nil, err
	}
	if string(b[:8]) != fileIDSignature {
		return nil, fmt.Errorf("vhdx: file identifier %q: %w", b[:8], image.ErrFormat)
	}
	v := &Reader{r: r, fileSize: fileSize}
	// The current header is the valid one with the higher sequence number.
	var errs []error
	for _, off := range []int64{header1Offset, header2Offset} {
		if err := image.ReadFull(r, b[:headerBytes], off, "vhdx: header"); err != nil {
			return nil, err
		}
		h, err := ParseHeader(b)
		if err != nil {
			errs = append(errs, fmt.Errorf("at %d: %w", off, err))
			continue
		}
		if v.header == nil || h.Sequence > v.header.Sequence {
			v.header = h
		}
	}
	if v.header == nil {
		return nil, fmt.Errorf("vhdx: no valid header: %w", errs[0])
	}
	if err := v.replayLog(); err != nil {
		return nil, err
	}
	regions, err := v.regionTable()
	if err != nil {
		return nil, err
	}
	var bat, meta *Region
	for i := range regions {
		switch g := regions[i].GUID; {
		case g == guidBAT:
			bat = &regions[i]
		case g == guidMetadata:
			meta = &regions[i]
		case regions[i].Required:
			return nil, image.Unsupportedf("vhdx: required region %v", g)
		}
	}
	if bat == nil || meta == nil {
		return nil, image.Corruptf("vhdx: region table lacks the BAT or metadata region")
	}
	used := [][2]int64{{0, 1 * mib}}
	if v.header.LogLength > 0 {
		used = append(used, [2]int64{int64(v.header.LogOffset), int64(v.header.LogOffset) + int64(v.header.LogLength)})
	}
	for _, reg := range []*Region{meta, bat} {
		name := map[bool]string{true: "BAT", false: "metadata"}[reg == bat]
		span := [2]int64{int64(reg.Offset), int64(reg.Offset) + int64(reg.Length)}
		if reg.Offset%mib != 0 || reg.Length == 0 || reg.Length%mib != 0 || reg.Offset > uint64(v.fileSize) || uint64(reg.Length) > uint64(v.fileSize)-reg.Offset {
			return nil, image.Corruptf("vhdx: %s region at 0x%x (%d bytes): not 1 MiB aligned or past the end of the file (%d bytes)", name, reg.Offset, reg.Length, v.fileSize)
		}
		for _, u := range used {
			if span[0] < u[1] && u[0] < span[1] {
				return nil, image.Corruptf("vhdx: %s region [0x%x,0x%x) overlaps [0x%x,0x%x)", name, span[0], span[1], u[0], u[1])
			}
		}
		used = append(used, span)
	}
	if err := v.readMetadata(meta); err != nil {
		return nil, err
	}
	if err := v.readBAT(bat, used); err != nil {
		return nil, err
	}
	return v, nil
}

func (v *Reader) replayLog() error {
	h := v.header
	if h.LogGUID == (GUID{}) {
		return nil
	}
	if h.LogVersion != 0 {
		return image.Unsupportedf("vhdx: log version %d", h.LogVersion)
	}
	if h.LogLength == 0 || h.LogLength%mib != 0 || h.LogOffset%mib != 0 || h.LogOffset < 1*mib ||
		h.LogOffset > uint64(v.fileSize) || uint64(h.LogLength) > uint64(v.fileSize)-h.LogOffset {
		return image.Corruptf("vhdx: log at 0x%x (%d bytes): not 1 MiB aligned or past the end of the file", h.LogOffset, h.LogLength)
	}
	if h.LogLength > maxLogLength {
		return image.Limitf("vhdx: log of %d bytes", h.LogLength)
	}
	log := make([]byte, h.LogLength)
	if err := image.ReadFull(v.r, log, int64(h.LogOffset), "vhdx: log"); err != nil {
		return err
	}
	seq := findLogSequence(log, h.LogGUID)
	if len(seq) == 0 {
		return nil // nothing valid to replay: the log is empty
	}
	o, err := replay(v.r, v.fileSize, seq)
	if err != nil {
		return err
	}
	v.r, v.fileSize, v.replayed = o, o.size, len(seq)
	return nil
}

// ReplayedLogEntries reports how many log entries Open replayed in memory.
func (v *Reader) ReplayedLogEntries() int { return v.replayed }

func (v *Reader) regionTable() ([]Region, error) {
	b := make([]byte, regionBytes)
	var first error
	for _, off := range []int64{region1Offset, region2Offset} {
		if err := image.ReadFull(v.r, b, off, "vhdx: region table"); err != nil {
			return nil, err
		}
		regions, err := ParseRegionTable(b)
		if err == nil {
			return regions, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

func (v *Reader) readMetadata(meta *Region) error {
	tbl := make([]byte, metadataTableBytes)
	if err := image.ReadFull(v.r, tbl, int64(meta.Offset), "vhdx: metadata table"); err != nil {
		return err
	}
	items, err := ParseMetadataTable(tbl)
	if err != nil {
		return err
	}
	get := func(g GUID, n uint32, name string) ([]byte, error) {
		for _, it := range items {
			if it.GUID != g {
				continue
			}
			if it.Length < n || it.Offset < metadataTableBytes || uint64(it.Offset)+uint64(it.Length) > uint64(meta.Length) {
				return nil, image.Corruptf("vhdx: metadata item %s at %d (%d bytes): outside the metadata region", name, it.Offset, it.Length)
			}
			b := make([]byte, n)
			if err := image.ReadFull(v.r, b, int64(meta.Offset)+int64(it.Offset), "vhdx: metadata item "+name); err != nil {
				return nil, err
			}
			return b, nil
		}
		return nil, image.Corruptf("vhdx: metadata item %s missing", name)
	}
	known := []GUID{guidFileParameters, guidVirtualSize, guidPage83, guidLogicalSector, guidPhysicalSector}
	for _, it := range items {
		if it.GUID == guidParentLocator {
			return image.Unsupportedf("vhdx: differencing disk (parent locator); merge it with its parent first")
		}
		isKnown := false
		for _, k := range known {
			isKnown = isKnown || it.GUID == k
		}
		if it.Required && !isKnown {
			return image.Unsupportedf("vhdx: required metadata item %v", it.GUID)
		}
	}
	le := binary.LittleEndian
	fp, err := get(guidFileParameters, 8, "file parameters")
	if err != nil {
		return err
	}
	bs, flags := le.Uint32(fp), le.Uint32(fp[4:])
	if flags&2 != 0 {
		return image.Unsupportedf("vhdx: differencing disk (HasParent); merge it with its parent first")
	}
	v.fixed = flags&1 != 0
	if bs < minBlockSize || bs > maxBlockSize || bs&(bs-1) != 0 {
		return image.Corruptf("vhdx: block size %d: must be a power of two from 1 MiB to 256 MiB", bs)
	}
	v.blockSize = int64(bs)
	vs, err := get(guidVirtualSize, 8, "virtual disk size")
	if err != nil {
		return err
	}
	size := le.Uint64(vs)
	ls, err := get(guidLogicalSector, 4, "logical sector size")
	if err != nil {
		return err
	}
	v.logicalSector = le.Uint32(ls)
	if v.logicalSector != 512 && v.logicalSector != 4096 {
		return image.Corruptf("vhdx: logical sector size %d", v.logicalSector)
	}
	if size > image.MaxVirtualSize || size%uint64(v.logicalSector) != 0 {
		return image.Corruptf("vhdx: virtual disk size %d: too large or not a multiple of the sector size", size)
	}
	v.size = int64(size)
	v.physSector = 4096
	if ps, err := get(guidPhysicalSector, 4, "physical sector size"); err == nil {
		v.physSector = le.Uint32(ps)
	}
	v.ratio = chunkRatio(bs, v.logicalSector)
	return nil
}

func (v *Reader) readBAT(bat *Region, used [][2]int64) error {
	blocks := (uint64(v.size) + uint64(v.blockSize) - 1) / uint64(v.blockSize)
	n := batEntries(blocks, v.ratio)
	if n*8 > uint64(bat.Length) {
		return image.Corruptf("vhdx: BAT region of %d bytes holds fewer than the %d entries the disk needs", bat.Length, n)
	}
	if n*8 > image.MaxTableBytes {
		return image.Limitf("vhdx: BAT of %d entries", n)
	}
	raw := make([]byte, n*8)
	if err := image.ReadFull(v.r, raw, int64(bat.Offset), "vhdx: BAT"); err != nil {
		return err
	}
	v.bat = make([]uint64, blocks)
	for i := range v.bat {
		e := binary.LittleEndian.Uint64(raw[batIndex(uint64(i), v.ratio)*8:])
		switch e & 7 {
		case payloadNotPresent, payloadUndefined, payloadZero, payloadUnmapped:
		case payloadFullyPresent:
			off := int64(e>>20) * mib
			if off < 1*mib || off >= v.fileSize {
				return image.Corruptf("vhdx: BAT entry for block %d: offset 0x%x outside the file (%d bytes)", i, off, v.fileSize)
			}
			span := [2]int64{off, off + v.blockSize}
			for _, u := range used {
				if span[0] < u[1] && u[0] < span[1] {
					return image.Corruptf("vhdx: BAT entry for block %d: block at 0x%x overlaps metadata [0x%x,0x%x)", i, off, u[0], u[1])
				}
			}
		case payloadPartialPresent:
			return image.Unsupportedf("vhdx: partially present block %d (differencing disk)", i)
		default:
			return image.Corruptf("vhdx: BAT entry for block %d: state %d", i, e&7)
		}
		v.bat[i] = e
	}
	return nil
}

// Header returns the current header.
func (v *Reader) Header() *Header { return v.header }

// BlockSize reports the payload block size.
func (v *Reader) BlockSize() int64 { return v.blockSize }

// LogicalSectorSize reports the logical sector size (512 or 4096).
func (v *Reader) LogicalSectorSize() int { return int(v.logicalSector) }

// Format implements image.Reader.
func (v *Reader) Format() image.Format { return image.VHDX }

// Size implements image.Reader.
func (v *Reader) Size() int64 { return v.size }

// Close implements image.Reader.
func (v *Reader) Close() error { return nil }

// ReadAt implements image.Reader.
func (v *Reader) ReadAt(p []byte, off int64) (int, error) {
	n, eof := image.CheckRead(p, off, v.size)
	if n == 0 {
		return 0, eof
	}
	for pos := int64(0); pos < int64(n); {
		o := off + pos
		blk, in := o/v.blockSize, o%v.blockSize
		k := min(int64(n)-pos, v.blockSize-in)
		dst := p[pos : pos+k]
		e := v.bat[blk]
		if e&7 != payloadFullyPresent {
			clear(dst)
		} else {
			host := int64(e>>20)*mib + in
			m, err := v.r.ReadAt(dst, host)
			if m < len(dst) {
				if err != nil && err != io.EOF {
					return int(pos), fmt.Errorf("vhdx: block %d: %w", blk, err)
				}
				clear(dst[m:])
			}
		}
		pos += k
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
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		blk := o / v.blockSize
		k := min(end-o, (blk+1)*v.blockSize-o)
		switch v.bat[blk] & 7 {
		case payloadFullyPresent:
			out.Add(o, k, image.Data)
		case payloadZero:
			out.Add(o, k, image.Zero)
		default:
			out.Add(o, k, image.Hole)
		}
		o += k
	}
	return out, nil
}
