// Package image defines what every disk-image format of Lunway shares: the
// Reader and Writer interfaces, the allocation-map Extent, content-based
// format detection, the sentinel errors, and small helpers used by the
// format packages (image/raw, image/qcow2, image/vmdk, image/vhd,
// image/vhdx). image/disk opens and creates image files by path, resolving
// backing files and extents; image/transfer moves data between an image
// and a blockdev.Device.
//
// Readers are built from an io.ReaderAt and the size of the file under it.
// Every structure read from an image is validated before use: offsets must
// lie inside the file, tables may not overlap the header or each other,
// and every allocation is capped by the file size and by the limits below,
// so a hostile image yields an error naming the structure, never a panic
// or an unbounded allocation.
//
// Writers accept data in increasing offset order and finish the image in
// Close. Formats whose layout allows it (raw, fixed VHD, fixed VHDX,
// streamOptimized VMDK) write strictly sequentially and so work on a pipe;
// the others need an io.WriterAt to go back for their tables.
package image
