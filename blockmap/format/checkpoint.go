package format

// Ref locates a map page: RefLen bytes at byte Off of segment Seq of
// layer Layer, whose page CRC (the page's own checksum field) is CRC.
// The zero Ref (Len == 0) means "no page": an empty subtree.
//
//	off len  field
//	  0   1  layer (0 = the volume itself, i = Ancestry[i-1])
//	  1   3  reserved, 0
//	  4   4  page length in bytes
//	  8   8  segment sequence number
//	 16   4  byte offset of the page in the segment
//	 20   4  the page's CRC-32C
type Ref struct {
	Layer uint8
	Len   uint32
	Seq   uint64
	Off   uint32
	CRC   uint32
}

// RefLen is the encoded size of a Ref.
const RefLen = 24

// IsZero reports an absent page.
func (r Ref) IsZero() bool { return r.Len == 0 }

func appendRef(b []byte, r Ref) []byte {
	b = append(b, r.Layer, 0, 0, 0)
	b = le.AppendUint32(b, r.Len)
	b = le.AppendUint64(b, r.Seq)
	b = le.AppendUint32(b, r.Off)
	return le.AppendUint32(b, r.CRC)
}

func (d *dec) ref() Ref {
	var r Ref
	r.Layer = d.u8()
	d.zeros(3)
	r.Len = d.u32()
	r.Seq = d.u64()
	r.Off = d.u32()
	r.CRC = d.u32()
	if d.err != nil {
		return Ref{}
	}
	if r.Layer >= MaxLayers {
		d.fail("ref layer out of range")
	}
	if r.Len == 0 && (r.Layer != 0 || r.Seq != 0 || r.Off != 0 || r.CRC != 0) {
		d.fail("empty ref with nonzero fields")
	}
	if r.Len > MaxPageLen || uint64(r.Off)+uint64(r.Len) > MaxObjectSize {
		d.fail("ref beyond the object size limit")
	}
	return r
}

// SegUsage is one row of the segment usage table: how many bytes of
// segment Seq (of the volume itself) the checkpoint's map references,
// data and map pages together.
type SegUsage struct {
	Seq       uint64
	LiveBytes uint64
	Flags     uint8
}

// Segment usage flags.
const (
	// UsageShared: some map entry references this segment's data at an
	// LBA other than the one its record lists (a copy by reference), so
	// compaction must find references by walking the map.
	UsageShared     uint8 = 1 << 0
	usageKnownFlags       = UsageShared
)

// CheckpointMagic starts a checkpoint root.
const CheckpointMagic = "LUNWAYCK"

// MaxCheckpointLen bounds a checkpoint root (its usage table grows with
// the number of live segments: about 6 bytes each).
const MaxCheckpointLen = 256 << 20

// Checkpoint is a checkpoint root (object V/ckpt/<gen>): the map tree
// root, the size and the segment usage table as of one instant. The
// highest generation that decodes is the current state; segments with
// sequence numbers >= ReplaySeq hold records made after it, which
// opening the volume replays.
//
//	off len  field
//	  0   8  magic "LUNWAYCK"
//	  8   2  format version (1)
//	 10   2  reserved, 0
//	 12   4  total length L, including the CRC
//	 16  16  volume ID
//	 32   8  generation
//	 40   8  size in bytes
//	 48   8  replay seq: the first segment not covered by this checkpoint
//	 56   8  next seq: no lower segment number is ever allocated again
//	 64   1  tree height h (interior levels; the root is at level h)
//	 65   3  reserved, 0
//	 68  24  root Ref (zero: the map is empty)
//	 92   4  reserved, 0
//	 96   8  guest bytes written, lifetime (informational)
//	104   8  backend bytes written, lifetime (informational)
//	112   4  usage row count N
//	116      N rows, in increasing seq: uvarint seq delta (the first row
//	         holds the seq itself), uvarint live bytes, u8 flags
//	L-4   4  CRC-32C of bytes [0, L-4)
type Checkpoint struct {
	ID                  [16]byte
	Gen                 uint64
	SizeBytes           uint64
	ReplaySeq           uint64
	NextSeq             uint64
	Height              uint8
	Root                Ref
	GuestBytesWritten   uint64
	BackendBytesWritten uint64
	Usage               []SegUsage
}

// AppendCheckpoint appends the encoding of c to b. Usage must be sorted
// by Seq without duplicates.
func AppendCheckpoint(b []byte, c *Checkpoint) []byte {
	b, start := startFramed(b, CheckpointMagic)
	b = append(b, c.ID[:]...)
	b = le.AppendUint64(b, c.Gen)
	b = le.AppendUint64(b, c.SizeBytes)
	b = le.AppendUint64(b, c.ReplaySeq)
	b = le.AppendUint64(b, c.NextSeq)
	b = append(b, c.Height, 0, 0, 0)
	b = appendRef(b, c.Root)
	b = le.AppendUint32(b, 0)
	b = le.AppendUint64(b, c.GuestBytesWritten)
	b = le.AppendUint64(b, c.BackendBytesWritten)
	b = le.AppendUint32(b, uint32(len(c.Usage)))
	var prev uint64
	for i, u := range c.Usage {
		delta := u.Seq
		if i > 0 {
			delta = u.Seq - prev
		}
		prev = u.Seq
		b = appendUvarint(b, delta)
		b = appendUvarint(b, u.LiveBytes)
		b = append(b, u.Flags)
	}
	return endFramed(b, start)
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// DecodeCheckpoint decodes and validates a checkpoint root.
func DecodeCheckpoint(b []byte) (*Checkpoint, error) {
	body, err := checkFramed(b, CheckpointMagic, "checkpoint", MaxCheckpointLen)
	if err != nil {
		return nil, err
	}
	d := dec{b: body, off: 16, what: "checkpoint"}
	c := &Checkpoint{}
	c.ID = d.id()
	c.Gen = d.u64()
	c.SizeBytes = d.u64()
	c.ReplaySeq = d.u64()
	c.NextSeq = d.u64()
	c.Height = d.u8()
	d.zeros(3)
	c.Root = d.ref()
	d.zeros(4)
	c.GuestBytesWritten = d.u64()
	c.BackendBytesWritten = d.u64()
	n := int(d.u32())
	if d.err != nil {
		return nil, d.err
	}
	if c.Height < 1 || c.Height > MaxHeight {
		return nil, corrupt("checkpoint", "tree height out of range")
	}
	if c.ReplaySeq > c.NextSeq {
		return nil, corrupt("checkpoint", "replay seq beyond next seq")
	}
	if c.SizeBytes > 1<<62 {
		return nil, corrupt("checkpoint", "size out of range")
	}
	// Each row takes at least 3 bytes: cap before allocating.
	if n < 0 || n > (len(body)-d.off)/3 {
		return nil, corrupt("checkpoint", "usage row count exceeds the object")
	}
	if n > 0 {
		c.Usage = make([]SegUsage, 0, n)
	}
	var prev uint64
	for i := 0; i < n && d.err == nil; i++ {
		delta := d.uvarint()
		var u SegUsage
		if i == 0 {
			u.Seq = delta
		} else {
			if delta == 0 || prev+delta < prev {
				d.fail("usage rows not strictly increasing")
				break
			}
			u.Seq = prev + delta
		}
		prev = u.Seq
		u.LiveBytes = d.uvarint()
		u.Flags = d.u8()
		if u.Flags&^usageKnownFlags != 0 {
			d.fail("unknown usage flags")
		}
		if u.Seq >= c.NextSeq {
			d.fail("usage row for a segment at or beyond next seq")
		}
		c.Usage = append(c.Usage, u)
	}
	if d.err != nil {
		return nil, d.err
	}
	if d.off != len(body) {
		return nil, corrupt("checkpoint", "trailing bytes")
	}
	return c, nil
}

// SnapshotMagic starts a snapshot record.
const SnapshotMagic = "LUNWAYSN"

// Snapshot is a snapshot record (object V/snap/<name>): a frozen copy of
// the checkpoint root the snapshot was taken at. Everything the embedded
// checkpoint references stays allocated until the record is deleted.
//
//	off len  field
//	  0   8  magic "LUNWAYSN"
//	  8   2  format version (1)
//	 10   2  reserved, 0
//	 12   4  total length L, including the CRC
//	 16  16  volume ID
//	 32   8  creation time, Unix nanoseconds (informational)
//	 40   8  reserved, 0
//	 48      snapshot name: u8 length, bytes
//	         the embedded checkpoint root, complete with its own CRC
//	L-4   4  CRC-32C of bytes [0, L-4)
type Snapshot struct {
	ID              [16]byte
	CreatedUnixNano int64
	Name            string
	Checkpoint      Checkpoint
}

// AppendSnapshot appends the encoding of s to b.
func AppendSnapshot(b []byte, s *Snapshot) []byte {
	b, start := startFramed(b, SnapshotMagic)
	b = append(b, s.ID[:]...)
	b = le.AppendUint64(b, uint64(s.CreatedUnixNano))
	b = le.AppendUint64(b, 0)
	b = appendName(b, s.Name)
	b = AppendCheckpoint(b, &s.Checkpoint)
	return endFramed(b, start)
}

// DecodeSnapshot decodes and validates a snapshot record.
func DecodeSnapshot(b []byte) (*Snapshot, error) {
	body, err := checkFramed(b, SnapshotMagic, "snapshot", MaxCheckpointLen+256)
	if err != nil {
		return nil, err
	}
	d := dec{b: body, off: 16, what: "snapshot"}
	s := &Snapshot{}
	s.ID = d.id()
	s.CreatedUnixNano = int64(d.u64())
	d.zeros(8)
	s.Name = d.name()
	if d.err != nil {
		return nil, d.err
	}
	c, err := DecodeCheckpoint(body[d.off:])
	if err != nil {
		return nil, err
	}
	if c.ID != s.ID {
		return nil, corrupt("snapshot", "embedded checkpoint belongs to another volume")
	}
	s.Checkpoint = *c
	return s, nil
}

// CloneMagic starts a clone marker.
const CloneMagic = "LUNWAYCL"

// CloneMarker (object O/clone/<clone> in the origin volume O) records that
// volume Clone was cloned from snapshot Snapshot of O, so that the
// snapshot is not deleted while the clone may reference its data. A
// marker whose clone has no superblock, or a superblock with another ID,
// is stale.
//
//	off len  field
//	  0   8  magic "LUNWAYCL"
//	  8   2  format version (1)
//	 10   2  reserved, 0
//	 12   4  total length L, including the CRC
//	 16  16  the clone's volume ID
//	 32      clone name: u8 length, bytes
//	         snapshot name: u8 length, bytes
//	L-4   4  CRC-32C of bytes [0, L-4)
type CloneMarker struct {
	CloneID  [16]byte
	Clone    string
	Snapshot string
}

// AppendCloneMarker appends the encoding of m to b.
func AppendCloneMarker(b []byte, m *CloneMarker) []byte {
	b, start := startFramed(b, CloneMagic)
	b = append(b, m.CloneID[:]...)
	b = appendName(b, m.Clone)
	b = appendName(b, m.Snapshot)
	return endFramed(b, start)
}

// DecodeCloneMarker decodes and validates a clone marker.
func DecodeCloneMarker(b []byte) (*CloneMarker, error) {
	body, err := checkFramed(b, CloneMagic, "clone marker", 1024)
	if err != nil {
		return nil, err
	}
	d := dec{b: body, off: 16, what: "clone marker"}
	m := &CloneMarker{}
	m.CloneID = d.id()
	m.Clone = d.name()
	m.Snapshot = d.name()
	if d.err != nil {
		return nil, d.err
	}
	if d.off != len(body) {
		return nil, corrupt("clone marker", "trailing bytes")
	}
	return m, nil
}
