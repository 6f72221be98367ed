package format

// PageMagic starts every map page.
const PageMagic = "LWPG"

// Page kinds.
const (
	PageLeaf     = 1
	PageInterior = 2
)

// Page sizes.
const (
	PageHeaderLen    = 24
	LeafEntryLen     = 24
	InteriorEntryLen = 4 + RefLen
	// MaxPageLen bounds any page.
	MaxPageLen = PageHeaderLen + LeafEntryLen<<MaxLeafShift
)

// The map is a radix tree over block numbers. With leaf shift ls and
// fanout shift fs, leaf page i maps blocks [i<<ls, (i+1)<<ls); an
// interior page at level l >= 1 with index i has up to 2^fs children,
// child slot s being the node at level l-1 with index i<<fs + s. The root
// is the node at level h (the checkpoint's height) with index 0. Absent
// children are empty subtrees: every block in them is deallocated.
//
// Page header:
//
//	off len  field
//	  0   4  magic "LWPG"
//	  4   1  kind (1 leaf, 2 interior)
//	  5   1  level (0 for leaves)
//	  6   2  reserved, 0
//	  8   8  node index
//	 16   4  entry count N
//	 20   4  CRC-32C of the whole page with this field zero
//	 24      N entries
//
// Leaf entry (24 bytes), sorted by start, non-overlapping, within the leaf:
//
//	off len  field
//	  0   4  first block, relative to the leaf's first block
//	  4   4  block count (> 0)
//	  8   1  layer of the segment holding the data
//	  9   3  reserved, 0
//	 12   8  segment seq
//	 20   4  byte offset of the first block's data in the segment
//
// Interior entry (28 bytes), sorted by slot:
//
//	off len  field
//	  0   4  child slot (< 2^fs)
//	  4  24  child Ref
//
// Layers inside a page are relative to the volume that wrote the page:
// a page read through layer L (its Ref's layer) maps an entry layer e to
// layer L+e of the reading volume.

// LeafExtent is one mapping of a leaf page.
type LeafExtent struct {
	Start uint32 // first block, relative to the leaf
	Count uint32
	Layer uint8
	Seq   uint64
	Off   uint32
}

// Leaf is a decoded leaf page.
type Leaf struct {
	Index   uint64
	Extents []LeafExtent
}

// Child is one entry of an interior page.
type Child struct {
	Slot uint32
	Ref  Ref
}

// Interior is a decoded interior page.
type Interior struct {
	Level    uint8
	Index    uint64
	Children []Child
}

func appendPageHeader(b []byte, kind, level uint8, index uint64, n int) []byte {
	b = append(b, PageMagic...)
	b = append(b, kind, level, 0, 0)
	b = le.AppendUint64(b, index)
	b = le.AppendUint32(b, uint32(n))
	return le.AppendUint32(b, 0)
}

// sealPage computes the CRC of the page that starts at b[start:] and
// returns it.
func sealPage(b []byte, start int) uint32 {
	crc := Checksum(b[start:])
	le.PutUint32(b[start+20:], crc)
	return crc
}

// AppendLeaf appends the encoding of l to b and returns it with the
// page's CRC (for its Ref).
func AppendLeaf(b []byte, l *Leaf) ([]byte, uint32) {
	start := len(b)
	b = appendPageHeader(b, PageLeaf, 0, l.Index, len(l.Extents))
	for _, e := range l.Extents {
		b = le.AppendUint32(b, e.Start)
		b = le.AppendUint32(b, e.Count)
		b = append(b, e.Layer, 0, 0, 0)
		b = le.AppendUint64(b, e.Seq)
		b = le.AppendUint32(b, e.Off)
	}
	return b, sealPage(b, start)
}

// AppendInterior appends the encoding of n to b and returns it with the
// page's CRC.
func AppendInterior(b []byte, n *Interior) ([]byte, uint32) {
	start := len(b)
	b = appendPageHeader(b, PageInterior, n.Level, n.Index, len(n.Children))
	for _, c := range n.Children {
		b = le.AppendUint32(b, c.Slot)
		b = appendRef(b, c.Ref)
	}
	return b, sealPage(b, start)
}

// PageInfo is what every page header says.
type PageInfo struct {
	Kind  uint8
	Level uint8
	Index uint64
	Count int
	CRC   uint32
}

// DecodePageHeader checks a page's framing and checksum (b must be the
// whole page) and returns its header.
func DecodePageHeader(b []byte) (PageInfo, error) {
	if len(b) < PageHeaderLen || len(b) > MaxPageLen {
		return PageInfo{}, corrupt("page", "bad length")
	}
	if string(b[:4]) != PageMagic {
		return PageInfo{}, corrupt("page", "bad magic")
	}
	p := PageInfo{Kind: b[4], Level: b[5], Index: le.Uint64(b[8:]), Count: int(le.Uint32(b[16:])), CRC: le.Uint32(b[20:])}
	if b[6] != 0 || b[7] != 0 {
		return PageInfo{}, corrupt("page", "reserved field is not zero")
	}
	var entryLen int
	switch p.Kind {
	case PageLeaf:
		if p.Level != 0 {
			return PageInfo{}, corrupt("page", "leaf with nonzero level")
		}
		entryLen = LeafEntryLen
	case PageInterior:
		if p.Level < 1 || p.Level > MaxHeight {
			return PageInfo{}, corrupt("page", "interior level out of range")
		}
		entryLen = InteriorEntryLen
	default:
		return PageInfo{}, corrupt("page", "unknown kind")
	}
	if p.Count < 0 || p.Count > (len(b)-PageHeaderLen)/entryLen || PageHeaderLen+p.Count*entryLen != len(b) {
		return PageInfo{}, corrupt("page", "entry count does not match the length")
	}
	var zero [4]byte
	sum := UpdateChecksum(Checksum(b[:20]), zero[:])
	sum = UpdateChecksum(sum, b[24:])
	if sum != p.CRC {
		return PageInfo{}, corrupt("page", "checksum mismatch")
	}
	return p, nil
}

// DecodeLeaf decodes and validates a leaf page of a tree whose leaves map
// 2^leafShift blocks.
func DecodeLeaf(b []byte, leafShift uint8) (*Leaf, error) {
	if leafShift < MinLeafShift || leafShift > MaxLeafShift {
		return nil, corrupt("leaf page", "bad leaf shift")
	}
	p, err := DecodePageHeader(b)
	if err != nil {
		return nil, err
	}
	if p.Kind != PageLeaf {
		return nil, corrupt("leaf page", "not a leaf")
	}
	span := uint64(1) << leafShift
	if p.Count > int(span) {
		return nil, corrupt("leaf page", "more extents than blocks")
	}
	if p.Index > MaxLBA>>leafShift {
		return nil, corrupt("leaf page", "index out of range")
	}
	l := &Leaf{Index: p.Index}
	if p.Count > 0 {
		l.Extents = make([]LeafExtent, p.Count)
	}
	var next uint64
	for i := range l.Extents {
		o := PageHeaderLen + i*LeafEntryLen
		e := LeafExtent{
			Start: le.Uint32(b[o:]),
			Count: le.Uint32(b[o+4:]),
			Layer: b[o+8],
			Seq:   le.Uint64(b[o+12:]),
			Off:   le.Uint32(b[o+20:]),
		}
		if b[o+9] != 0 || b[o+10] != 0 || b[o+11] != 0 {
			return nil, corrupt("leaf page", "reserved field is not zero")
		}
		if e.Count == 0 || uint64(e.Start) < next || uint64(e.Start)+uint64(e.Count) > span {
			return nil, corrupt("leaf page", "extents overlap, are unsorted or leave the leaf")
		}
		if e.Layer >= MaxLayers {
			return nil, corrupt("leaf page", "layer out of range")
		}
		next = uint64(e.Start) + uint64(e.Count)
		l.Extents[i] = e
	}
	return l, nil
}

// DecodeInterior decodes and validates an interior page whose nodes have
// up to 2^fanoutShift children.
func DecodeInterior(b []byte, fanoutShift uint8) (*Interior, error) {
	if fanoutShift < MinFanoutShift || fanoutShift > MaxFanoutShift {
		return nil, corrupt("interior page", "bad fanout shift")
	}
	p, err := DecodePageHeader(b)
	if err != nil {
		return nil, err
	}
	if p.Kind != PageInterior {
		return nil, corrupt("interior page", "not an interior page")
	}
	fan := 1 << fanoutShift
	if p.Count > fan || p.Count == 0 {
		return nil, corrupt("interior page", "child count out of range")
	}
	n := &Interior{Level: p.Level, Index: p.Index, Children: make([]Child, p.Count)}
	next := uint32(0)
	for i := range n.Children {
		o := PageHeaderLen + i*InteriorEntryLen
		slot := le.Uint32(b[o:])
		if slot < next || slot >= uint32(fan) {
			return nil, corrupt("interior page", "child slots unsorted or out of range")
		}
		next = slot + 1
		d := dec{b: b[o+4 : o+InteriorEntryLen], what: "interior page"}
		r := d.ref()
		if d.err != nil {
			return nil, d.err
		}
		if r.IsZero() {
			return nil, corrupt("interior page", "empty child ref")
		}
		n.Children[i] = Child{Slot: slot, Ref: r}
	}
	return n, nil
}

// PageCRC returns the checksum field of an encoded page (which
// DecodePageHeader verifies), for comparison with the page's Ref. b must
// hold at least a page header.
func PageCRC(b []byte) uint32 {
	if len(b) < PageHeaderLen {
		return 0
	}
	return le.Uint32(b[20:])
}
