// Package disk opens and creates disk-image files by path. Open detects
// the format by content (image.Detect) and resolves the files an image
// names — qcow2 backing files (of any format), VMDK extents — relative to
// the directory of the image that names them, refusing chains deeper than
// image.MaxChainDepth, chains that loop, and (unless
// OpenOptions.AllowAnyPath) files outside the directory of the image
// opened. Create makes a new image file (and, for a monolithicFlat VMDK,
// its extent file next to it); NewWriter writes an image to any
// io.Writer, a pipe for the formats CreateOptions.Sequential reports.
package disk
