// Package vhdx reads and writes Microsoft VHDX images (fixed and dynamic),
// following the MS-VHDX specification.
//
//	0       file type identifier "vhdxfile"
//	64 KiB  header 1      128 KiB header 2 (the valid one with the higher
//	                              sequence number is current)
//	192 KiB region table 1  256 KiB region table 2 (BAT and metadata regions)
//	        log, metadata region, BAT, payload blocks (1 MiB aligned)
//
// The block allocation table (BAT) interleaves one sector-bitmap entry
// after every chunk-ratio payload entries, with
// chunkRatio = 2^23 * logicalSectorSize / blockSize.
//
// A non-empty log (a header whose LogGuid is not zero, left by a crash) is
// replayed on read into an in-memory overlay of the file, so the image is
// read as it would be after replay without writing to it. Differencing
// disks (HasParent) are refused.
//
// The fixed writer is strictly sequential (works on a pipe); the dynamic
// writer goes back to fill in the BAT.
package vhdx
