package vmdk

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/lunway/lunway/image"
)

// Descriptor is a parsed VMDK text descriptor.
//
//	# Disk DescriptorFile
//	version=1
//	CID=fffffffe
//	parentCID=ffffffff
//	createType="monolithicFlat"
//
//	# Extent description
//	RW 2048 FLAT "disk-flat.vmdk" 0
//
//	ddb.geometry.cylinders = "2"
type Descriptor struct {
	Version    int
	CID        uint32
	ParentCID  uint32
	CreateType string
	Extents    []ExtentLine
	// ParentFileNameHint names the parent of a delta link.
	ParentFileNameHint string
	// DDB holds the ddb.* keys.
	DDB map[string]string
}

// ExtentLine is one line of the extent description.
type ExtentLine struct {
	Access  string // RW, RDONLY, NOACCESS
	Sectors uint64
	Type    string // FLAT, SPARSE, ZERO, VMFS, VMFSSPARSE, SESPARSE, ...
	File    string // empty for ZERO
	Offset  uint64 // in sectors, FLAT and VMFS only
}

const (
	maxExtents     = 4096
	noParentCID    = 0xffffffff
	maxExtentLines = maxExtents
)

// ParseDescriptor parses descriptor text. Unknown keys are ignored.
func ParseDescriptor(text []byte) (*Descriptor, error) {
	if len(text) > maxDescriptor {
		return nil, image.Limitf("vmdk: descriptor of %d bytes", len(text))
	}
	d := &Descriptor{ParentCID: noParentCID, DDB: map[string]string{}}
	s := string(text)
	if i := strings.IndexByte(s, 0); i >= 0 { // embedded descriptors are NUL padded
		s = s[:i]
	}
	var total uint64
	for n, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || line[0] == '#' {
			continue
		}
		switch {
		case strings.HasPrefix(line, "RW ") || strings.HasPrefix(line, "RDONLY ") || strings.HasPrefix(line, "NOACCESS "):
			e, err := parseExtentLine(line)
			if err != nil {
				return nil, fmt.Errorf("vmdk: descriptor line %d: %w", n+1, err)
			}
			if len(d.Extents) >= maxExtentLines {
				return nil, image.Limitf("vmdk: descriptor with more than %d extents", maxExtents)
			}
			total += e.Sectors
			if total > image.MaxVirtualSize/sector {
				return nil, image.Limitf("vmdk: descriptor extents total more than %d sectors", uint64(image.MaxVirtualSize/sector))
			}
			d.Extents = append(d.Extents, e)
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"`)
		switch {
		case k == "version":
			d.Version, _ = strconv.Atoi(v)
		case k == "CID":
			c, _ := strconv.ParseUint(v, 16, 32)
			d.CID = uint32(c)
		case k == "parentCID":
			c, err := strconv.ParseUint(v, 16, 32)
			if err != nil {
				return nil, image.Corruptf("vmdk: descriptor line %d: parentCID %q", n+1, v)
			}
			d.ParentCID = uint32(c)
		case k == "createType":
			d.CreateType = v
		case k == "parentFileNameHint":
			d.ParentFileNameHint = v
		case strings.HasPrefix(k, "ddb."):
			if len(d.DDB) < 256 {
				d.DDB[k] = v
			}
		}
	}
	return d, nil
}

// parseExtentLine parses `ACCESS SECTORS TYPE ["FILE" [OFFSET]]`.
func parseExtentLine(line string) (ExtentLine, error) {
	var e ExtentLine
	head, file, quoted := strings.Cut(line, `"`)
	f := strings.Fields(head)
	if len(f) != 3 {
		return e, image.Corruptf("extent %q: want ACCESS SECTORS TYPE", line)
	}
	e.Access, e.Type = f[0], f[2]
	n, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return e, image.Corruptf("extent %q: sectors %q", line, f[1])
	}
	e.Sectors = n
	if quoted {
		name, rest, ok := strings.Cut(file, `"`)
		if !ok {
			return e, image.Corruptf("extent %q: unterminated file name", line)
		}
		e.File = name
		if rest = strings.TrimSpace(rest); rest != "" {
			off, err := strconv.ParseUint(strings.Fields(rest)[0], 10, 64)
			if err != nil || off > image.MaxVirtualSize/sector {
				return e, image.Corruptf("extent %q: offset %q", line, rest)
			}
			e.Offset = off
		}
	}
	if e.Type != "ZERO" && e.File == "" {
		return e, image.Corruptf("extent %q: no file name", line)
	}
	return e, nil
}

// geometry returns the BIOS geometry VMware records for a disk.
func geometry(sectors uint64) (cyl, heads, spt uint64) {
	heads, spt = 16, 63
	cyl = min(sectors/(heads*spt), 16383)
	return max(cyl, 1), heads, spt
}

// formatDescriptor renders a descriptor for one extent.
func formatDescriptor(cid uint32, createType string, sectors uint64, extType, file string) []byte {
	c, h, s := geometry(sectors)
	var b strings.Builder
	fmt.Fprintf(&b, "# Disk DescriptorFile\nversion=1\nCID=%08x\nparentCID=ffffffff\ncreateType=%q\n\n", cid, createType)
	fmt.Fprintf(&b, "# Extent description\n")
	if extType == "FLAT" {
		fmt.Fprintf(&b, "RW %d %s %q 0\n\n", sectors, extType, file)
	} else {
		fmt.Fprintf(&b, "RW %d %s %q\n\n", sectors, extType, file)
	}
	fmt.Fprintf(&b, "# The Disk Data Base\n#DDB\n\n")
	fmt.Fprintf(&b, "ddb.virtualHWVersion = \"4\"\nddb.geometry.cylinders = \"%d\"\nddb.geometry.heads = \"%d\"\nddb.geometry.sectors = \"%d\"\nddb.adapterType = \"ide\"\n", c, h, s)
	return []byte(b.String())
}
