package image

import (
	"bytes"
	"fmt"
	"io"
)

// Magic numbers, by offset:
//
//	qcow2   0      "QFI\xfb"
//	VMDK    0      "KDMV"  (hosted sparse extent, little endian 0x564d444b)
//	VMDK    0      "# Disk DescriptorFile" (a text descriptor)
//	VHDX    0      "vhdxfile"
//	VHD     0      "conectix" (the footer copy of a dynamic disk)
//	VHD     size-512 "conectix" (the footer of every VHD; size-511 in old
//	                 images whose footer lost a byte)
//
// Formats Lunway recognises but does not read are reported as
// ErrUnsupported rather than silently treated as raw.
const (
	magicQCOW2      = "QFI\xfb"
	magicVMDK       = "KDMV"
	magicVMDK3      = "COWD"
	magicVHDX       = "vhdxfile"
	magicVHD        = "conectix"
	magicQED        = "QED\x00"
	magicQCOW1      = "QFI\xfb\x00\x00\x00\x01"
	magicVDI        = "<<< "
	magicDescriptor = "# Disk DescriptorFile"
)

// maxDescriptorFile caps a VMDK text descriptor file.
const maxDescriptorFile = 1 << 20

// Detect identifies the format of an image of size bytes by its content,
// never by its name. Unknown content is Raw. A file whose magic names a
// format Lunway does not read (QED, QCOW version 1, VDI, VMDK3) gets an
// error wrapping ErrUnsupported.
func Detect(r io.ReaderAt, size int64) (Format, error) {
	head := make([]byte, min(size, 512))
	if err := ReadFull(r, head, 0, "image header"); err != nil {
		return "", err
	}
	switch {
	case hasPrefix(head, magicQCOW1):
		return "", Unsupportedf("qcow version 1 image")
	case hasPrefix(head, magicQCOW2):
		return QCOW2, nil
	case hasPrefix(head, magicVMDK):
		return VMDK, nil
	case hasPrefix(head, magicVMDK3):
		return "", Unsupportedf("vmdk: VMware 3 (COWD) sparse extent")
	case hasPrefix(head, magicVHDX):
		return VHDX, nil
	case hasPrefix(head, magicVHD):
		return VHD, nil
	case hasPrefix(head, magicQED):
		return "", Unsupportedf("qed image")
	case hasPrefix(head, magicVDI) && len(head) >= 0x44 &&
		bytes.Equal(head[0x40:0x44], []byte{0x7f, 0x10, 0xda, 0xbe}):
		return "", Unsupportedf("vdi image")
	case size <= maxDescriptorFile && IsDescriptor(head):
		return VMDK, nil
	}
	for _, back := range []int64{512, 511} {
		if size >= back+512 || (back == 512 && size >= 512) {
			tail := make([]byte, len(magicVHD))
			if err := ReadFull(r, tail, size-back, "vhd footer"); err != nil {
				return "", fmt.Errorf("detect: %w", err)
			}
			if string(tail) == magicVHD {
				return VHD, nil
			}
		}
	}
	return Raw, nil
}

// IsDescriptor reports whether head (the start of a file) looks like a
// VMDK text descriptor: the customary first line, or a createType key
// within the first lines of printable text.
func IsDescriptor(head []byte) bool {
	if hasPrefix(head, magicDescriptor) {
		return true
	}
	for _, c := range head {
		if c != '\n' && c != '\r' && c != '\t' && (c < 0x20 || c == 0x7f) { // UTF-8 file names are fine
			return false
		}
	}
	return bytes.Contains(head, []byte("\ncreateType=")) || bytes.HasPrefix(head, []byte("createType="))
}

func hasPrefix(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == prefix
}
