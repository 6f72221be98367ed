package image

import "io"

// File is a data file an image refers to (a VMDK extent).
type File interface {
	io.ReaderAt
	io.Closer
}

// Resolver opens the files an image names: a qcow2 or VMDK backing image
// and VMDK extent files. Names are passed exactly as the image records
// them; a Resolver interprets relative names against the directory of the
// image that names them (image/disk does). A Resolver also bounds chains:
// the Resolver it hands to a backing image refuses to go deeper than
// MaxChainDepth and refuses a file already in the chain.
//
// Readers opened with a nil Resolver refuse images that name other files
// with ErrUnsupported.
type Resolver interface {
	// OpenBacking opens a backing image. format is the format the image
	// records for it, or "" to detect it by content.
	OpenBacking(name string, format Format) (Reader, error)
	// OpenFile opens a raw data file and reports its size.
	OpenFile(name string) (File, int64, error)
}
