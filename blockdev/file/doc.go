// Package file is a blockdev.Device on a regular file or a block device.
//
//	d, err := file.Open(ctx, "/var/lib/lunway/lun0.img", &file.Options{Create: true, SizeBytes: 1 << 30})
//
// I/O is pread(2)/pwrite(2) on one descriptor, with no lock on the plain
// read and write path. Concurrent overlapping writes are ordered by the
// kernel (file systems serialise buffered writes to one inode; direct I/O
// is atomic per sector), which the conformance suite checks block by
// block. os.File keeps the descriptor alive while calls are in flight, so
// a Close never lets a pwrite land on a reused descriptor number.
//
// # Durability
//
// Flush is fdatasync(2). A FUA write is pwritev2(2) with RWF_DSYNC, or
// pwrite and fdatasync on kernels without it. Close flushes.
//
// # Provisioning
//
// On files, Unmap punches a hole (fallocate PUNCH_HOLE|KEEP_SIZE) and
// WriteZeroes without unmap uses FALLOC_FL_ZERO_RANGE; where the file
// system has neither, zeros are written instead, and Info().Thin says so:
// it is set only when holes can be punched. AllocationStatus walks the
// file with lseek SEEK_DATA/SEEK_HOLE and rounds outwards to logical
// blocks: a block that is even partly allocated is reported mapped.
//
// On block devices Unmap also uses fallocate PUNCH_HOLE|KEEP_SIZE, which
// the kernel turns into a WRITE ZEROES request that may deallocate and
// that guarantees zeros on read. BLKDISCARD is not used: a discarded range
// need not read back as zeros, and the SCSI layer promises LBPRZ=1 (read
// zeros after UNMAP). Where the device cannot do that, Unmap falls back to
// BLKZEROOUT (zeros written, possibly by the device) and Info().Thin is
// false; Thin is true when the queue advertises both discard and write
// zeroes (sysfs queue/discard_max_bytes and write_zeroes_max_bytes).
// WriteZeroes without unmap is BLKZEROOUT. A block device's size and block
// sizes come from BLKGETSIZE64, BLKSSZGET and BLKPBSZGET; Resize refuses
// block devices with blockdev.ErrNotSupported; SEEK_DATA on a block device
// reports everything mapped.
//
// # Atomic operations
//
// CompareAndWrite and Resize need writes to stay out of their way. Plain
// writes (WriteAt, Unmap, WriteZeroes, CopyRange) announce themselves with
// an atomic counter and take a fast, lock-free path unless one of those is
// active; while one is, writes take a range lock instead, and the
// CompareAndWrite or Resize first waits for the writes already on the fast
// path to finish. Reads never wait.
//
// # Options
//
// Options.Direct opens with O_DIRECT; unaligned caller buffers go through
// aligned bounce buffers, and Open checks the file system's direct I/O
// alignment (statx STATX_DIOALIGN) against the logical block size.
// Options.ReadOnly opens read-only and every write fails with
// blockdev.ErrReadOnly. Open takes an flock(2) on the file (shared when
// read-only), so two Lunway processes never write one image: a second
// writer gets blockdev.ErrInUse. A block device opened for writing is also
// opened with O_EXCL, which the kernel refuses (ErrInUse) while the device
// is mounted or otherwise held exclusively.
//
// CopyRange copies between file Devices with copy_file_range(2), which
// file systems with reflinks turn into a metadata operation; anything else
// is blockdev.ErrNotSupported and the caller copies by reading and writing.
package file
