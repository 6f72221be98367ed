// Package iscsi is a blockdev.Device on a logical unit of any iSCSI
// target (Lunway's own or another), through the Go initiator in
// target/initiator. lunway import and export use it for iscsi:// URLs.
//
//	t, err := iscsi.ParseURL("iscsi://127.0.0.1:3260/iqn.2026-11.dev.lunway:default/0")
//	dev, err := iscsi.Open(ctx, t, nil)
//	defer dev.Close()
//
// # Commands
//
// ReadAt and WriteAt send READ (16) and WRITE (16) (FUA for blockdev.FUA),
// split at the smaller of Options.MaxTransferBytes and the target's
// MAXIMUM TRANSFER LENGTH (VPD page B0h); the pieces of one call run in
// parallel on the one session. Flush is SYNCHRONIZE CACHE. The optional
// capabilities exist only when the target advertises them, so Open
// returns one of several small types (see caps.go):
//
//   - blockdev.Unmapper: UNMAP, when READ CAPACITY (16) reports LBPME,
//     VPD B2h reports LBPU, and deallocated blocks read as zeros (LBPRZ);
//     each command stays within MAXIMUM UNMAP LBA COUNT.
//   - blockdev.ZeroWriter: WRITE SAME (16) with one zero block, when VPD
//     B2h reports LBPWS or REPORT SUPPORTED OPERATION CODES lists it; the
//     UNMAP bit is set only with LBPME, LBPWS and LBPRZ. Each command stays
//     within MAXIMUM WRITE SAME LENGTH.
//   - blockdev.AllocationStatuser: GET LBA STATUS, when LBPME and LBPRZ
//     are reported (deallocated blocks must read as zeros) and the target
//     answers it at Open.
//
// Info comes from READ CAPACITY (16) (or (10)), the physical block
// exponent and MODE SENSE's write-protect bit; Thin is set when both
// Unmap and AllocationStatus are available.
//
// # Recovery
//
// Only ErrorRecoveryLevel 0 exists, so recovery is by connection:
//
//   - A connection that fails (or a command that gets no answer within
//     Options.CommandTimeout) is dropped and a new session logged in, up to
//     Options.ReconnectAttempts times with a doubling backoff, with the
//     same ISID so that the target reinstates the session. Commands that
//     were in flight are sent again: every command the Device sends is
//     idempotent.
//   - A unit attention is cleared (TEST UNIT READY until none is left)
//     and the command retried once; POWER ON/RESET and CAPACITY DATA HAS
//     CHANGED make the Device read the capacity again.
//   - BUSY, TASK SET FULL and NOT READY (becoming ready) are retried with
//     a doubling backoff for Options.BusyTimeout, then reported as
//     blockdev.ErrUnavailable.
//
// A volatile write the target acknowledged lives in its write cache until
// a SYNCHRONIZE CACHE. If the connection is lost before that, the Device
// cannot know whether the target kept it, so Flush (and Close) fail with
// ErrLostWrites from then on rather than promise durability they cannot
// check.
//
// # Errors
//
// Sense data maps back to blockdev's sentinels, mirroring what Lunway's
// target sends for them: LBA OUT OF RANGE → ErrOutOfRange, DATA PROTECT →
// ErrReadOnly (27/07: ErrNoSpace), MEDIUM ERROR → ErrCorrupt, an
// unsupported command or field → ErrNotSupported, RESERVATION CONFLICT →
// ErrInUse, and busy states after BusyTimeout → ErrUnavailable. The
// *initiator.StatusError with the sense stays in the chain.
//
// # Concurrency
//
// A Device is safe for concurrent use; all calls share one session. Close
// waits for calls in progress, flushes and logs out.
package iscsi
