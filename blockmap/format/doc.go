// Package format is the on-backend format of a Lunway block-map volume:
// pure encoders and decoders for the superblock, checkpoint roots,
// snapshot records, clone markers, segment records and map pages, plus
// the object-naming rules. It does no I/O, keeps no state and never
// panics on any input: every decoder checks lengths, caps counts before
// allocating, verifies checksums and returns an error wrapping
// blockdev.ErrCorrupt (or ErrUnsupportedVersion for a version it does not
// know). Decoded values never alias the input.
//
// The format is documented for readers without this code in
// docs/FORMAT.md; the constants here are the normative values.
//
// All integers are little-endian; every checksum is CRC-32C (Castagnoli).
package format
