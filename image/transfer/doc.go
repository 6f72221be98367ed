// Package transfer moves data between disk images and blockdev.Devices:
// Import (image → Device) and Export (Device → image), streaming, sparse
// aware in both directions, parallel with bounded concurrency, with
// progress reporting, resume and verification.
//
// Both directions walk the virtual disk on a grid of chunks (Options.Chunk
// bytes, a multiple of the device's logical block size). A chunk the
// source's allocation map calls a hole is never read; a chunk with data is
// read whole and scanned in 64 KiB segments, and all-zero segments are
// treated as holes too.
//
// Import writes data chunks with WriteAt, in parallel (the Device may be
// a remote LUN with latency). Holes are skipped when the destination is
// known to read as zeros there — Options.DestinationZeroed, or a
// Deallocated extent from blockdev.AllocationStatuser — and otherwise made
// zero with WriteZeroes, Unmap or zero-filled writes, so that an import
// into a used Device (or a restarted one) yields exactly the image.
// With Options.Resume, data chunks the destination already holds are
// read, compared and not rewritten.
//
// Export reads chunks in parallel and hands them to the image.Writer in
// order (writers take increasing offsets); unallocated ranges, known from
// blockdev.AllocationStatuser when the Device has it, and all-zero
// segments are left as holes in the image.
//
// Every goroutine a call starts ends before the call returns. Context
// cancellation stops work promptly: no new I/O starts after it.
package transfer
