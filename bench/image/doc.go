// Command image measures `lunway import` and `lunway export` against
// `qemu-img convert` doing the same conversions to and from an iscsi://
// LUN of a running Lunway daemon, in one run on one machine.
//
//	go run ./bench/image -size 4G -fraction 0.25 -runs 3 -dir /var/tmp -out report.md
//
// It writes a sparse raw disk of -size bytes with -fraction of its 1 MiB
// runs random data, makes an image of it in each format with qemu-img,
// starts `lunway serve` with one LUN of the same size (a file LUN, or a
// blockmap volume with -backend blockmap), and then, for each format:
//
//   - import: the image onto the LUN: `lunway import IMAGE URL` against
//     `qemu-img convert -n -t writeback -O raw IMAGE URL`, the LUN emptied
//     (UNMAP of everything) before each run;
//   - export: the LUN (holding the disk) into a new image file: `lunway
//     export URL IMAGE --format F` against `qemu-img convert -O F URL IMAGE`.
//
// Both sides end durable: our import ends with SYNCHRONIZE CACHE and our
// export syncs the image; qemu-img runs with -t writeback on the LUN (it
// flushes before exiting) and its image file is fsynced inside the timing.
// Each result is checked with qemu-img compare. Rates are MiB/s of the
// disk's allocated data, medians of -runs runs; ratio is ours over
// qemu-img's (above 1: Lunway is faster).
package main
