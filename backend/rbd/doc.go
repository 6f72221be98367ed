// Package rbd serves a LUN straight from a Ceph RBD image: Device is a
// blockdev.Device on one image, with no block map in between.
//
// The device builds only with the `ceph` build tag (go build -tags
// ceph,pacific; it needs librbd-dev and librados-dev). Without the tag
// the package holds only its options and error mapping.
//
// # I/O
//
// Requests are librbd asynchronous calls (rbd_aio_read2, rbd_aio_write2,
// rbd_aio_write_zeroes, rbd_aio_flush). Their completions are queued in C
// and drained by one goroutine, so no librbd thread calls into Go and no
// OS thread waits per request; Options.MaxInFlight (default 128) bounds
// the requests in flight. Data passes through C buffers owned by the
// request, so a caller may stop waiting (its context ended, or
// Options.IOTimeout passed) without librbd writing into memory it reuses.
// Reads and writes may also be started without a caller waiting
// (blockdev.AsyncIO, which the SCSI layer uses for plain READ and WRITE):
// the goroutine that drains the completions then completes them, and a
// watchdog ends those that outlive IOTimeout or whose context ends.
//
//   - WriteAt acknowledges what librbd acknowledged: with librbd's default
//     cache policy (writearound) that may be before the OSDs have it, the
//     volatile write cache of the blockdev contract. FUA is a write
//     followed by rbd_aio_flush; Flush is rbd_aio_flush, skipped when no
//     write completed since the last flush. (With the exclusive-lock
//     feature a flush waits for the lock, which a gateway that crashed
//     holds until the OSD times its watch out, 30 s by default; writes
//     after such a crash wait for it too.)
//   - Unmap is rbd_write_zeroes without flags: whole objects are removed
//     and partial ones zeroed, so the range reads as zeros. (rbd_discard
//     would skip extents smaller than rbd_discard_granularity_bytes, 64
//     KiB, leaving old data behind.) WriteZeroes with unmap is the same;
//     without unmap it writes allocated zeros
//     (RBD_WRITE_ZEROES_FLAG_THICK_PROVISION).
//   - AllocationStatus comes from rbd_diff_iterate2 against no snapshot
//     (whole_object false, the parent included), using the object map when
//     the image has fast-diff.
//   - Resize is rbd_resize2; shrinking is refused while data lies beyond
//     the new end. A poller re-reads the size (Options.SizePollInterval) and
//     reports resizes made elsewhere through Options.OnResize.
//   - COMPARE AND WRITE is not offered: librbd's rbd_compare_and_write
//     accepts a single 512-byte sector only, so the SCSI layer emulates it,
//     which is atomic among this daemon's sessions. Serving one image from
//     several gateways at once therefore needs Options.ExclusiveLock
//     (active/passive), or VMware's ATS is not atomic across them.
//
// # Outages
//
// The connection sets rados_osd_op_timeout to Options.IOTimeout (30 s by
// default), so librbd fails a request the cluster does not answer with
// ETIMEDOUT; the device also stops waiting after IOTimeout on its own.
// Either way the request fails with an error wrapping
// blockdev.ErrUnavailable, which the SCSI layer answers with BUSY; the
// connection stays up and service resumes when the cluster returns.
// Health reports Degraded while requests wait long and Unavailable after a
// transient failure until the next success.
//
// # Identity
//
// Metadata and SetMetadata read and write image-meta keys; the daemon
// keeps a LUN's SCSI identity in MetadataNAA and MetadataSerial, so that
// every gateway serving the image presents the same device.
package rbd
