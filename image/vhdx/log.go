package vhdx

import (
	"encoding/binary"
	"io"
	"sort"

	"github.com/lunway/lunway/image"
)

// Log entry layout (little endian), a multiple of 4 KiB:
//
//	 0 "loge"  4 checksum (CRC-32C of the whole entry)  8 entry length
//	12 tail (log offset of the oldest entry still needed)
//	16 sequence number  24 descriptor count  28 reserved
//	32 log GUID  48 flushed file offset  56 last file offset
//	64 descriptors, 32 bytes each, padded to 4 KiB:
//	   "zero" reserved u32, zero length u64, file offset u64, sequence u64
//	   "desc" trailing bytes u32, leading bytes u64, file offset u64, sequence u64
//	then one 4 KiB data sector per "desc" descriptor, in order:
//	   "data" sequence high u32, 4084 bytes, sequence low u32
//
// A data descriptor's 4 KiB sector is leading bytes (8) + the data
// sector's 4084 bytes + trailing bytes (4).
const (
	logSector      = 4 * kib
	logEntryHeader = 64
	logDescriptor  = 32
	maxLogLength   = 64 * mib
)

type logDesc struct {
	zero     bool
	length   uint64 // zero descriptors
	fileOff  uint64
	leading  [8]byte
	trailing [4]byte
	data     []byte // 4084 bytes for data descriptors
}

type logEntry struct {
	pos, length       uint64
	tail              uint64
	seq               uint64
	flushed, lastFile uint64
	descs             []logDesc
}

// parseLogEntry decodes the entry at log position pos, or returns nil when
// there is no valid entry of this log there.
func parseLogEntry(log []byte, pos uint64, guid GUID) *logEntry {
	L := uint64(len(log))
	at := func(off, n uint64) []byte { // n bytes at pos+off, wrapping
		b := make([]byte, n)
		for i := uint64(0); i < n; {
			p := (pos + off + i) % L
			c := copy(b[i:], log[p:min(L, p+n-i)])
			i += uint64(c)
		}
		return b
	}
	h := at(0, logEntryHeader)
	le := binary.LittleEndian
	if string(h[:4]) != "loge" {
		return nil
	}
	e := &logEntry{pos: pos, length: uint64(le.Uint32(h[8:])), tail: uint64(le.Uint32(h[12:])),
		seq: le.Uint64(h[16:]), flushed: le.Uint64(h[48:]), lastFile: le.Uint64(h[56:])}
	count := uint64(le.Uint32(h[24:]))
	if e.length == 0 || e.length%logSector != 0 || e.length > L || e.tail%logSector != 0 || e.tail >= L || e.seq == 0 {
		return nil
	}
	if GUID(h[32:48]) != guid {
		return nil
	}
	descBytes := (logEntryHeader + count*logDescriptor + logSector - 1) / logSector * logSector
	if descBytes > e.length {
		return nil
	}
	b := at(0, e.length)
	if crc(b, 4) != le.Uint32(b[4:]) {
		return nil
	}
	dataSec := descBytes
	for i := uint64(0); i < count; i++ {
		d := b[logEntryHeader+i*logDescriptor:]
		if le.Uint64(d[24:]) != e.seq {
			return nil
		}
		switch string(d[:4]) {
		case "zero":
			z := logDesc{zero: true, length: le.Uint64(d[8:]), fileOff: le.Uint64(d[16:])}
			if z.length%logSector != 0 || z.fileOff%logSector != 0 || z.length > image.MaxVirtualSize || z.fileOff > image.MaxVirtualSize {
				return nil
			}
			e.descs = append(e.descs, z)
		case "desc":
			if dataSec+logSector > e.length {
				return nil
			}
			s := b[dataSec : dataSec+logSector]
			if string(s[:4]) != "data" || uint64(le.Uint32(s[4:]))<<32|uint64(le.Uint32(s[4092:])) != e.seq {
				return nil
			}
			x := logDesc{fileOff: le.Uint64(d[16:]), data: s[8:4092]}
			copy(x.trailing[:], d[4:8])
			copy(x.leading[:], d[8:16])
			if x.fileOff%logSector != 0 || x.fileOff > image.MaxVirtualSize {
				return nil
			}
			e.descs = append(e.descs, x)
			dataSec += logSector
		default:
			return nil
		}
	}
	if dataSec != e.length {
		return nil
	}
	return e
}

// findLogSequence returns the entries to replay, oldest first: the valid
// sequence (consecutive entries with consecutive sequence numbers whose
// newest entry's tail lies within it) with the highest sequence number.
func findLogSequence(log []byte, guid GUID) []*logEntry {
	L := uint64(len(log))
	entries := map[uint64]*logEntry{}
	for pos := uint64(0); pos < L; pos += logSector {
		if e := parseLogEntry(log, pos, guid); e != nil {
			entries[pos] = e
		}
	}
	next := func(e *logEntry) *logEntry {
		n := entries[(e.pos+e.length)%L]
		if n != nil && n.seq == e.seq+1 {
			return n
		}
		return nil
	}
	prev := map[*logEntry]*logEntry{}
	for _, e := range entries {
		if n := next(e); n != nil {
			prev[n] = e
		}
	}
	var best []*logEntry
	keys := make([]uint64, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	for _, k := range keys {
		head := entries[k]
		if next(head) != nil {
			continue // not the newest of its chain
		}
		// Walk back from the head to the entry at its tail.
		chain := []*logEntry{head}
		for e := head; e.pos != head.tail; {
			p := prev[e]
			if p == nil || len(chain) > len(entries) {
				chain = nil
				break
			}
			chain = append(chain, p)
			e = p
		}
		if chain == nil {
			continue
		}
		if best == nil || head.seq > best[0].seq {
			best = chain
		}
	}
	// Reverse into oldest-first order.
	for i, j := 0, len(best)-1; i < j; i, j = i+1, j-1 {
		best[i], best[j] = best[j], best[i]
	}
	return best
}

// overlay is the file as it reads after replaying a log: zero ranges
// applied over the file, then 4 KiB data sectors over both. It keeps the
// replayed data in memory and never writes to the file.
type overlay struct {
	base    io.ReaderAt
	size    int64
	zeros   [][2]int64 // [off, end)
	sectors map[int64][]byte
}

func replay(base io.ReaderAt, fileSize int64, seq []*logEntry) (*overlay, error) {
	o := &overlay{base: base, size: fileSize, sectors: map[int64][]byte{}}
	head := seq[len(seq)-1]
	if head.flushed > uint64(fileSize) {
		return nil, image.Corruptf("vhdx: log: file is %d bytes, shorter than the flushed size %d", fileSize, head.flushed)
	}
	if head.lastFile > image.MaxVirtualSize*2 {
		return nil, image.Corruptf("vhdx: log: last file offset %d", head.lastFile)
	}
	o.size = max(o.size, int64(head.lastFile))
	for _, e := range seq {
		for _, d := range e.descs {
			off := int64(d.fileOff)
			if d.zero {
				end := off + int64(d.length)
				for k := range o.sectors {
					if k >= off && k < end {
						delete(o.sectors, k)
					}
				}
				o.zeros = append(o.zeros, [2]int64{off, end})
				o.size = max(o.size, end)
				continue
			}
			s := make([]byte, logSector)
			copy(s, d.leading[:])
			copy(s[8:], d.data)
			copy(s[4092:], d.trailing[:])
			o.sectors[off] = s
			o.size = max(o.size, off+logSector)
		}
	}
	return o, nil
}

// ReadAt reads the replayed file; past the real file it reads zeros.
func (o *overlay) ReadAt(p []byte, off int64) (int, error) {
	if off >= o.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), o.size-off))
	m, err := o.base.ReadAt(p[:n], off)
	if m < n {
		if err != nil && err != io.EOF {
			return m, err
		}
		clear(p[m:n])
	}
	end := off + int64(n)
	for _, z := range o.zeros {
		if lo, hi := max(z[0], off), min(z[1], end); lo < hi {
			clear(p[lo-off : hi-off])
		}
	}
	for s := off &^ (logSector - 1); len(o.sectors) > 0 && s < end; s += logSector {
		if d, ok := o.sectors[s]; ok {
			lo, hi := max(s, off), min(s+logSector, end)
			copy(p[lo-off:hi-off], d[lo-s:])
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
