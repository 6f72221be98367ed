package qcow2

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/lunway/lunway/image"
)

// Header layout (big endian); version 2 ends at 72, version 3 at
// header_length (>= 104):
//
//	 0  magic "QFI\xfb"         4  version
//	 8  backing_file_offset    16  backing_file_size
//	20  cluster_bits           24  size (virtual, bytes)
//	32  crypt_method           36  l1_size (entries)
//	40  l1_table_offset        48  refcount_table_offset
//	56  refcount_table_clusters 60 nb_snapshots
//	64  snapshots_offset
//	72  incompatible_features  80  compatible_features
//	88  autoclear_features     96  refcount_order
//	100 header_length          104 compression_type (1 byte)
//
// Header extensions follow the header, each {type u32, length u32, data
// padded to 8 bytes}, ended by type 0.
const (
	magic       = "QFI\xfb"
	v2HeaderLen = 72
	v3HeaderLen = 104

	// Incompatible feature bits.
	incompatDirty       = 1 << 0
	incompatCorrupt     = 1 << 1
	incompatExtDataFile = 1 << 2
	incompatCompression = 1 << 3
	incompatExtendedL2  = 1 << 4
	incompatKnown       = incompatDirty | incompatCorrupt | incompatExtDataFile | incompatCompression | incompatExtendedL2

	// Header extension types.
	extEnd            = 0x00000000
	extBackingFormat  = 0xe2792aca
	extFeatureNames   = 0x6803f857
	extBitmaps        = 0x23852875
	extEncryption     = 0x0537be77
	extExternalData   = 0x44415441
	maxBackingNameLen = 1023

	minClusterBits = 9
	maxClusterBits = 21
)

// Header is a decoded qcow2 header with its extensions.
type Header struct {
	Version               uint32
	BackingFileOffset     uint64
	BackingFileSize       uint32
	ClusterBits           uint32
	Size                  uint64
	CryptMethod           uint32
	L1Size                uint32
	L1TableOffset         uint64
	RefcountTableOffset   uint64
	RefcountTableClusters uint32
	NbSnapshots           uint32
	SnapshotsOffset       uint64
	IncompatibleFeatures  uint64
	CompatibleFeatures    uint64
	AutoclearFeatures     uint64
	RefcountOrder         uint32
	HeaderLength          uint32
	CompressionType       uint8

	// From header extensions.
	BackingFormat    string
	ExternalDataFile string
	HasEncryptionExt bool
}

// ParseHeader decodes the header and its extensions from b, the start of
// the file (normally its first cluster, at least 72 bytes). It checks the
// header's own consistency; Open checks it against the file.
func ParseHeader(b []byte) (*Header, error) {
	if len(b) < v2HeaderLen {
		return nil, image.Corruptf("qcow2: header: %d bytes, need %d", len(b), v2HeaderLen)
	}
	if string(b[:4]) != magic {
		return nil, fmt.Errorf("qcow2: header: bad magic %q: %w", b[:4], image.ErrFormat)
	}
	be := binary.BigEndian
	h := &Header{
		Version:               be.Uint32(b[4:]),
		BackingFileOffset:     be.Uint64(b[8:]),
		BackingFileSize:       be.Uint32(b[16:]),
		ClusterBits:           be.Uint32(b[20:]),
		Size:                  be.Uint64(b[24:]),
		CryptMethod:           be.Uint32(b[32:]),
		L1Size:                be.Uint32(b[36:]),
		L1TableOffset:         be.Uint64(b[40:]),
		RefcountTableOffset:   be.Uint64(b[48:]),
		RefcountTableClusters: be.Uint32(b[56:]),
		NbSnapshots:           be.Uint32(b[60:]),
		SnapshotsOffset:       be.Uint64(b[64:]),
		RefcountOrder:         4,
		HeaderLength:          v2HeaderLen,
	}
	switch h.Version {
	case 2:
	case 3:
		if len(b) < v3HeaderLen {
			return nil, image.Corruptf("qcow2: version 3 header: %d bytes, need %d", len(b), v3HeaderLen)
		}
		h.IncompatibleFeatures = be.Uint64(b[72:])
		h.CompatibleFeatures = be.Uint64(b[80:])
		h.AutoclearFeatures = be.Uint64(b[88:])
		h.RefcountOrder = be.Uint32(b[96:])
		h.HeaderLength = be.Uint32(b[100:])
		if h.HeaderLength < v3HeaderLen || h.HeaderLength%8 != 0 {
			return nil, image.Corruptf("qcow2: header_length %d: must be a multiple of 8, at least %d", h.HeaderLength, v3HeaderLen)
		}
		if h.HeaderLength > v3HeaderLen {
			if int(h.HeaderLength) > len(b) {
				return nil, image.Corruptf("qcow2: header_length %d: past the %d header bytes", h.HeaderLength, len(b))
			}
			h.CompressionType = b[104]
		}
	default:
		return nil, image.Unsupportedf("qcow2: version %d", h.Version)
	}
	if h.ClusterBits < minClusterBits || h.ClusterBits > maxClusterBits {
		return nil, image.Corruptf("qcow2: cluster_bits %d: must be %d..%d", h.ClusterBits, minClusterBits, maxClusterBits)
	}
	clusterSize := uint64(1) << h.ClusterBits
	if uint64(len(b)) > clusterSize {
		b = b[:clusterSize] // the header and its extensions live in cluster 0
	}
	if h.RefcountOrder > 6 {
		return nil, image.Corruptf("qcow2: refcount_order %d: must be 0..6", h.RefcountOrder)
	}
	if h.Size > image.MaxVirtualSize {
		return nil, image.Limitf("qcow2: virtual size %d", h.Size)
	}
	if h.BackingFileOffset != 0 {
		if h.BackingFileSize == 0 || h.BackingFileSize > maxBackingNameLen {
			return nil, image.Corruptf("qcow2: backing_file_size %d: must be 1..%d", h.BackingFileSize, maxBackingNameLen)
		}
	}
	if err := h.parseExtensions(b); err != nil {
		return nil, err
	}
	return h, nil
}

// parseExtensions reads the extensions between the header and the end of
// the buffer (cluster 0).
func (h *Header) parseExtensions(b []byte) error {
	off := uint64(h.HeaderLength)
	for n := 0; ; n++ {
		if off+8 > uint64(len(b)) {
			if h.Version == 2 {
				return nil // version 2 images need not have an end marker in a short buffer
			}
			return image.Corruptf("qcow2: header extension %d at %d: past the header cluster", n, off)
		}
		typ := binary.BigEndian.Uint32(b[off:])
		length := uint64(binary.BigEndian.Uint32(b[off+4:]))
		if typ == extEnd {
			return nil
		}
		data := off + 8
		if length > uint64(len(b))-data {
			return image.Corruptf("qcow2: header extension 0x%08x at %d: length %d past the header cluster", typ, off, length)
		}
		v := b[data : data+length]
		switch typ {
		case extBackingFormat:
			h.BackingFormat = string(bytes.TrimRight(v, "\x00"))
		case extExternalData:
			h.ExternalDataFile = string(bytes.TrimRight(v, "\x00"))
		case extEncryption:
			h.HasEncryptionExt = true
		}
		off = data + (length+7)&^7
	}
}

// ClusterSize returns the cluster size in bytes.
func (h *Header) ClusterSize() int64 { return 1 << h.ClusterBits }

// check refuses the features this reader does not implement.
func (h *Header) check() error {
	if h.CryptMethod != 0 || h.HasEncryptionExt {
		return image.Unsupportedf("qcow2: encrypted image (crypt_method %d)", h.CryptMethod)
	}
	if h.IncompatibleFeatures&incompatExtDataFile != 0 || h.ExternalDataFile != "" {
		return image.Unsupportedf("qcow2: external data file %q", h.ExternalDataFile)
	}
	if h.IncompatibleFeatures&incompatCorrupt != 0 {
		return image.Corruptf("qcow2: image is marked corrupt (repair it with qemu-img check -r all)")
	}
	if h.IncompatibleFeatures&incompatExtendedL2 != 0 && h.ClusterBits < 14 {
		return image.Corruptf("qcow2: extended L2 entries with %d-byte clusters: subclusters would be smaller than 512 bytes", 1<<h.ClusterBits)
	}
	if h.IncompatibleFeatures&incompatCompression != 0 || h.CompressionType != 0 {
		if h.CompressionType == 1 {
			return image.Unsupportedf("qcow2: zstd compressed clusters (only deflate is implemented; convert with qemu-img -o compression_type=zlib)")
		}
		if h.CompressionType != 0 {
			return image.Unsupportedf("qcow2: compression type %d", h.CompressionType)
		}
	}
	if u := h.IncompatibleFeatures &^ incompatKnown; u != 0 {
		return image.Unsupportedf("qcow2: unknown incompatible features 0x%x", u)
	}
	return nil
}

// Append encodes h (without extensions) as a header of h.HeaderLength
// bytes followed by an end-of-extensions marker, appended to b.
func (h *Header) Append(b []byte) []byte {
	be := binary.BigEndian
	b = append(b, magic...)
	b = be.AppendUint32(b, h.Version)
	b = be.AppendUint64(b, h.BackingFileOffset)
	b = be.AppendUint32(b, h.BackingFileSize)
	b = be.AppendUint32(b, h.ClusterBits)
	b = be.AppendUint64(b, h.Size)
	b = be.AppendUint32(b, h.CryptMethod)
	b = be.AppendUint32(b, h.L1Size)
	b = be.AppendUint64(b, h.L1TableOffset)
	b = be.AppendUint64(b, h.RefcountTableOffset)
	b = be.AppendUint32(b, h.RefcountTableClusters)
	b = be.AppendUint32(b, h.NbSnapshots)
	b = be.AppendUint64(b, h.SnapshotsOffset)
	if h.Version >= 3 {
		b = be.AppendUint64(b, h.IncompatibleFeatures)
		b = be.AppendUint64(b, h.CompatibleFeatures)
		b = be.AppendUint64(b, h.AutoclearFeatures)
		b = be.AppendUint32(b, h.RefcountOrder)
		b = be.AppendUint32(b, h.HeaderLength)
		for i := v3HeaderLen; i < int(h.HeaderLength); i++ {
			b = append(b, 0)
		}
	}
	return be.AppendUint64(b, 0) // end of extensions
}
