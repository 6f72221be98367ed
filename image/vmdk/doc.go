// Package vmdk reads and writes VMware virtual disks, following VMware's
// "Virtual Disk Format 1.1" specification: hosted sparse extents
// (monolithicSparse, streamOptimized with compressed grains and markers),
// flat extents (monolithicFlat and the other descriptor-based layouts) and
// ZERO extents, described by a text descriptor that is either embedded in
// a sparse extent or a file of its own whose extent names are relative to
// the descriptor.
//
// Refused clearly: delta links (a parentCID other than ffffffff), VMFS
// sparse and SE sparse extents, and the legacy COWD format.
//
// The writers produce monolithicSparse (needs an io.WriterAt to go back
// for the grain tables), streamOptimized (strictly sequential, works on a
// pipe) and monolithicFlat (a descriptor plus a raw extent file).
package vmdk
