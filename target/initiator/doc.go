// Package initiator is a Go iSCSI initiator (RFC 7143): it dials a target
// portal, logs in (with optional one-way or mutual CHAP), discovers targets
// with SendTargets, and runs SCSI commands with many in flight at once
// (immediate data, unsolicited Data-Out, R2T, Data-In reassembly,
// residuals, sense data). It is used by tests, benchmarks and by lunway's
// import/export against live LUNs.
//
// For protocol tests a Session also gives low-level access: WriteRaw sends
// arbitrary bytes (malformed PDUs included) and Unsolicited delivers the
// PDUs the session did not match to a request (Reject, Async Message,
// responses to raw requests).
//
// A Session is safe for concurrent use. Only ErrorRecoveryLevel 0 and one
// connection per session are supported.
package initiator
