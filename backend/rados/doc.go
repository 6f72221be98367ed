// Package rados is a backend.Store on Ceph RADOS objects, and the
// connection to a Ceph cluster that backend/rbd shares.
//
// Everything that links librados (Connect, Conn, Open, Store) builds only
// with the `ceph` build tag (go build -tags ceph,pacific; it needs
// librados-dev). Without the tag the package holds only its options and
// error mapping, so that `go build ./...` works on machines without Ceph.
//
// # Layout
//
// A Store is one RADOS pool and namespace. Each backend object is the
// RADOS object of the same name in that namespace: a blockmap volume
// "vol" lives entirely in objects named as package blockmap/format names
// them ("vol/sb", "vol/seg/…", …), readable with `rados -p POOL -N NS`.
//
// # Semantics
//
//   - Put is one RADOS write operation (create + write_full, plus further
//     write steps for objects larger than one write step, MaxWriteStep):
//     RADOS applies an operation atomically, so readers see the old or the
//     new object, and the OSD acknowledges it only once it is durable on
//     every replica.
//   - WriteAt (backend.Overwriter) is one write operation in place, also
//     atomic and durable when it returns.
//   - ReadAt is one read; a read that reaches past the end returns the bytes
//     up to it and io.EOF.
//   - List: RADOS lists a namespace in hash order, not by name. List
//     gathers the names that start with the prefix, sorts them and stats
//     them in batches as it calls fn. Memory is therefore proportional to
//     the number of matching names; Options.MaxListNames (default 4 Mi)
//     bounds it, and a larger listing fails rather than exhausting memory.
//     Every List scans the whole namespace: blockmap lists only when it
//     opens, checks or deletes a volume.
//
// # Concurrency, timeouts and errors
//
// Every librados call is synchronous and holds an OS thread, so a
// semaphore bounds the calls in flight (Options.MaxConcurrency). A call
// cannot be cancelled once librados has it: the context is honoured while
// waiting for the semaphore and checked before each call, and the
// connection sets rados_osd_op_timeout and rados_mon_op_timeout
// (ConnOptions.OpTimeout, default 30 s) and client_mount_timeout
// (ConnOptions.ConnectTimeout, default 10 s) so that no call waits forever
// on an unreachable cluster.
//
// Errors are *Error values that keep the errno and wrap the sentinel it
// maps to: ENOENT is backend.ErrNotFound; ENOSPC and EDQUOT are
// backend.ErrNoSpace; ETIMEDOUT, ENOTCONN, ESHUTDOWN (blocklisted),
// ECONNREFUSED and other connectivity errors are backend.ErrUnavailable.
// Connect names what is wrong: a missing keyring or ceph.conf, a rejected
// key, an unknown pool, or monitors that did not answer within the
// connect timeout (the only one of these that is transient).
package rados
