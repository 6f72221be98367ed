// Command imagebench measures the import and export throughput of
// image/transfer against `qemu-img convert` doing the same conversion, on
// one machine in one run:
//
//	go run ./image/internal/imagebench -size 4G -fraction 0.25 -dir /var/tmp
//
// It makes a sparse raw file of -size bytes with -fraction of it random
// data (in 1 MiB runs), then for each format: export = the raw file opened
// as a blockdev/file Device → an image (ours) vs qemu-img convert -f raw
// -O fmt; import = that image → a fresh sparse raw file Device (ours) vs
// qemu-img convert -O raw. Rates are MiB/s of allocated data, the median
// of -runs runs, and both sides include making the output durable (our
// import flushes the Device and our export syncs the file; qemu-img
// convert does neither, so its output is fsynced inside the timing).
// Results go to stdout as a table (for docs/PERFORMANCE.md).
package main
