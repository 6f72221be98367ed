// Package qcow2 reads and writes QEMU's qcow2 images, versions 2 and 3
// (qemu-img's compat=0.10 and compat=1.1), following the specification in
// QEMU's docs/interop/qcow2.txt.
//
// The reader serves the active L1 table (snapshots are ignored), standard,
// zero and deflate-compressed clusters, extended L2 entries (32
// subclusters per cluster), and backing files through an image.Resolver,
// which bounds the chain. It refuses clearly: encryption, external data
// files, zstd compression, images marked corrupt, and unknown
// incompatible features.
//
// The writer produces a fresh version-3 (or version-2) image without
// snapshots or a backing file. Data clusters are written sequentially from
// the first cluster after the header; the L2 tables, the L1 table and the
// refcount structures follow them, and the header is written last:
//
//	cluster 0        header (+ extensions)
//	clusters 1..n    data clusters, in guest order
//	                 L2 tables (one per L1 entry in use)
//	                 L1 table
//	                 refcount blocks, refcount table
//
// so the writer needs an io.WriterAt, but only to go back for the header.
package qcow2
