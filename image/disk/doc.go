// Package disk opens and creates disk-image files by path. Open detects
// the format by content (image.Detect) and resolves the files an image
// names — qcow2 and VMDK backing files, VMDK extents — relative to the
// directory of the image that names them, refusing chains deeper than
// image.MaxChainDepth and chains that loop. Create makes a new image file
// (and, for a monolithicFlat VMDK, its extent file next to it).
package disk
