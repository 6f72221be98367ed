// Package mem is an in-memory backend.Store for tests and for the crash
// clones of backend/fault.
//
// Data is copied in and out: the store never retains or aliases a caller's
// buffer. By default the store also implements backend.Overwriter, so that
// code above it can exercise its overwrite-in-place path; with
// Options.DisableOverwriter it implements backend.Store alone, like an S3
// bucket, and the put-only path is exercised instead. That is why New
// returns the Store interface rather than a concrete type: the Overwriter
// capability is found by type assertion and must be absent when disabled.
//
// Options.CapacityBytes bounds the total size of all objects (ErrNoSpace
// beyond it), so that callers can test how they handle a full backend.
package mem
