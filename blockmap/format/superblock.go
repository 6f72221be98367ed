package format

import "strconv"

// Limits of the format. Decoders refuse anything beyond them.
const (
	// MaxLayers bounds the clone depth: layer 0 is the volume itself,
	// layers 1..MaxLayers-1 its ancestors (origin, origin's origin, ...).
	MaxLayers = 64
	// MinSegmentSize and MaxSegmentSize bound a volume's nominal segment size.
	MinSegmentSize = 64 << 10
	MaxSegmentSize = 256 << 20
	// MaxObjectSize bounds any segment object (a segment may exceed the
	// nominal size by one record).
	MaxObjectSize = 1 << 30
	// MinLeafShift..MaxLeafShift bound log2(blocks per leaf page).
	MinLeafShift = 3
	MaxLeafShift = 16
	// MinFanoutShift..MaxFanoutShift bound log2(children per interior page).
	MinFanoutShift = 2
	MaxFanoutShift = 12
	// MaxHeight bounds the number of interior levels of the map tree.
	MaxHeight = 32
	// MaxSuperblockLen bounds the superblock object.
	MaxSuperblockLen = 64 << 10
)

// SuperblockMagic starts a superblock.
const SuperblockMagic = "LUNWAYSB"

// Ancestor is one layer of a clone's ancestry: the volume and snapshot
// the layer's data comes from.
type Ancestor struct {
	Volume   string
	Snapshot string
	ID       [16]byte // the ancestor volume's ID
}

// Superblock is a volume's static description, written once at creation
// (object V/super).
//
//	off len  field
//	  0   8  magic "LUNWAYSB"
//	  8   2  format version (1)
//	 10   2  reserved, 0
//	 12   4  total length L, including the CRC
//	 16  16  volume ID
//	 32   8  creation time, Unix nanoseconds (informational)
//	 40   4  logical block size B: 512 or 4096
//	 44   4  physical block size: a power of two, a multiple of B
//	 48   4  nominal segment size in bytes
//	 52   1  leaf shift: a leaf page maps 2^shift blocks
//	 53   1  fanout shift: an interior page has up to 2^shift children
//	 54   1  ancestry count n (< 64)
//	 55   9  reserved, 0
//	 64      name: u8 length, bytes
//	         n ancestors (layer 1..n): u8 len, volume name; u8 len,
//	         snapshot name; 16-byte volume ID
//	L-4   4  CRC-32C of bytes [0, L-4)
type Superblock struct {
	ID                [16]byte
	CreatedUnixNano   int64
	Name              string
	BlockSize         uint32
	PhysicalBlockSize uint32
	SegmentSize       uint32
	LeafShift         uint8
	FanoutShift       uint8
	// Ancestry[i] is layer i+1.
	Ancestry []Ancestor
}

// Validate checks the fields against the format's limits.
func (s *Superblock) Validate() error {
	if err := ValidName(s.Name); err != nil {
		return err
	}
	if s.BlockSize != 512 && s.BlockSize != 4096 {
		return corrupt("superblock", "block size "+strconv.Itoa(int(s.BlockSize))+" is not 512 or 4096")
	}
	p := s.PhysicalBlockSize
	if p < s.BlockSize || p > 1<<20 || p&(p-1) != 0 {
		return corrupt("superblock", "physical block size "+strconv.Itoa(int(p))+" is not a power-of-two multiple of the block size")
	}
	if s.SegmentSize < MinSegmentSize || s.SegmentSize > MaxSegmentSize || s.SegmentSize%s.BlockSize != 0 {
		return corrupt("superblock", "segment size "+strconv.Itoa(int(s.SegmentSize))+" out of range")
	}
	if s.LeafShift < MinLeafShift || s.LeafShift > MaxLeafShift {
		return corrupt("superblock", "leaf shift out of range")
	}
	if s.FanoutShift < MinFanoutShift || s.FanoutShift > MaxFanoutShift {
		return corrupt("superblock", "fanout shift out of range")
	}
	if len(s.Ancestry) >= MaxLayers {
		return corrupt("superblock", "too many ancestors")
	}
	for _, a := range s.Ancestry {
		if ValidName(a.Volume) != nil || ValidName(a.Snapshot) != nil {
			return corrupt("superblock", "bad ancestor name")
		}
	}
	return nil
}

// AppendSuperblock appends the encoding of s to b. s must be valid.
func AppendSuperblock(b []byte, s *Superblock) []byte {
	b, start := startFramed(b, SuperblockMagic)
	b = append(b, s.ID[:]...)
	b = le.AppendUint64(b, uint64(s.CreatedUnixNano))
	b = le.AppendUint32(b, s.BlockSize)
	b = le.AppendUint32(b, s.PhysicalBlockSize)
	b = le.AppendUint32(b, s.SegmentSize)
	b = append(b, s.LeafShift, s.FanoutShift, byte(len(s.Ancestry)))
	b = append(b, make([]byte, 9)...)
	b = appendName(b, s.Name)
	for _, a := range s.Ancestry {
		b = appendName(b, a.Volume)
		b = appendName(b, a.Snapshot)
		b = append(b, a.ID[:]...)
	}
	return endFramed(b, start)
}

// DecodeSuperblock decodes and validates a superblock object.
func DecodeSuperblock(b []byte) (*Superblock, error) {
	body, err := checkFramed(b, SuperblockMagic, "superblock", MaxSuperblockLen)
	if err != nil {
		return nil, err
	}
	d := dec{b: body, off: 16, what: "superblock"}
	s := &Superblock{}
	s.ID = d.id()
	s.CreatedUnixNano = int64(d.u64())
	s.BlockSize = d.u32()
	s.PhysicalBlockSize = d.u32()
	s.SegmentSize = d.u32()
	s.LeafShift = d.u8()
	s.FanoutShift = d.u8()
	n := int(d.u8())
	d.zeros(9)
	s.Name = d.name()
	if n >= MaxLayers {
		d.fail("too many ancestors")
	}
	if d.err == nil && n > 0 {
		s.Ancestry = make([]Ancestor, 0, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		var a Ancestor
		a.Volume = d.name()
		a.Snapshot = d.name()
		a.ID = d.id()
		s.Ancestry = append(s.Ancestry, a)
	}
	if d.err != nil {
		return nil, d.err
	}
	if d.off != len(body) {
		return nil, corrupt("superblock", "trailing bytes")
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}
