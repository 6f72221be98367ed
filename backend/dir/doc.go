// Package dir is a backend.Store in a local directory: one file per object.
// It also implements backend.Overwriter.
//
// # Layout
//
// An object name's '/'-separated elements map to nested directories. So
// that an object may share its name with the "directory" of others ("a"
// and "a/b" are both valid objects), every directory element gets the
// suffix '@', which no object name contains:
//
//	object name         file under the root
//	a                   a
//	a/b                 a@/b
//	a/b/c               a@/b@/c
//
// Files whose names contain '~' are the store's own: "~lock" at the root
// (an exclusive flock(2) held while the store is open, so that two
// processes never share a directory) and "~tmp-…" temporary files. Any
// other entry that does not map back to a valid object name is ignored.
// Empty directories left by Delete are not removed (removing them would
// race with a concurrent Put creating an object inside); they cost an
// inode and are skipped by List.
//
// # Durability
//
// Put writes a temporary file in the object's directory, fsyncs it,
// renames it over the object and fsyncs the directory: readers see the old
// or the new file, and after a crash the old or the new object survives.
// Temporary files a crash leaves behind are removed by Open. Delete fsyncs
// the directory. WriteAt is pwrite(2) then fdatasync(2), plus an fsync of
// the directory when it created the file. Directories are created one
// element at a time and their parents fsynced, so that an object whose Put
// returned is reachable after a crash. Options.NoSync skips every sync,
// for tests that do not need durability.
//
// # Errors
//
// A missing object is backend.ErrNotFound, ENOSPC, EDQUOT and EFBIG are
// backend.ErrNoSpace, calls after Close are backend.ErrClosed, and a
// directory held open by another Store is blockdev.ErrInUse; the
// underlying *fs.PathError stays in the chain.
//
// List reads one directory at a time, so memory is bounded by the widest
// directory on the path rather than by the number of objects.
package dir
