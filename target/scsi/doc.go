// Package scsi is the SCSI device server: it interprets CDBs (SPC-4, SBC-3)
// against logical units backed by blockdev.Devices, keeps per-nexus state
// (unit attentions, reservations) and the task set that task management
// acts on. It knows nothing of iSCSI; transport.go is its contract with a
// transport.
//
// # Layout
//
//   - table.go: the command set as data. Every opcode (and service action)
//     has one entry: handler, CDB usage mask, data direction, reservation
//     and ALUA classes, whether it reports unit attentions. The usage mask
//     is both the REPORT SUPPORTED OPERATION CODES usage data and the
//     reserved-bit check, so the two cannot disagree.
//   - dispatch.go: the generic checks in SAM-5 order (LU, unit attention,
//     opcode, CDB, ALUA state, reservation conflict), then the handler.
//   - sense.go: sense data (fixed and descriptor) and errorSense, the one
//     place where blockdev errors become status and sense.
//   - spc.go, mode.go, sbc.go: primary commands, mode pages, block commands.
//   - pr.go, prstore.go: SCSI-2 and persistent reservations, APTPL through
//     a PRStore (FilePRStore writes temp+fsync+rename+dir fsync).
//   - caw.go: COMPARE AND WRITE and the range lock that makes it atomic on
//     Devices without a CompareAndWriter.
//   - xcopy.go: EXTENDED COPY (LID1) and RECEIVE COPY RESULTS, across the
//     LUs of a Registry shared by the daemon's Targets.
//   - alua.go: target port groups and asymmetric access states, changed
//     live by the daemon (ALUA.SetState) or by SET TARGET PORT GROUPS.
//   - task.go, target.go, lu.go: task set (SIMPLE in parallel, ORDERED and
//     HEAD OF QUEUE honoured), task management with a bounded wait for
//     stuck tasks, per-nexus unit attention queues, per-LU statistics.
//
// # Concurrency
//
// Commands of different LUs, and of different ranges of one LU, run in
// parallel: the I/O path takes no target-wide lock. Per command it reads
// a few atomics (mode parameters, pending unit attentions, reservation
// presence) and touches the LU's task queue at Begin and End. READ data
// buffers come from size-class pools and go back with Result.Release.
//
// # Choices the standards leave open
//
//   - The write cache is volatile and WCE is changeable: WCE=0 makes every
//     write FUA (write-through).
//   - REQUEST SENSE reports and clears the oldest unit attention (SPC-4
//     6.39, UA_INTLCK_CTRL=0); INQUIRY and REPORT LUNS neither report nor
//     clear one; REPORT LUNS clears REPORTED LUNS DATA HAS CHANGED.
//   - Transient backend trouble (ErrUnavailable, deadlines) is BUSY, never
//     LOGICAL UNIT NOT SUPPORTED, which hypervisors treat as device loss.
//   - A LOGICAL UNIT RESET and a TARGET WARM RESET raise BUS DEVICE RESET
//     FUNCTION OCCURRED (29/03); a TARGET COLD RESET POWER ON OCCURRED
//     (29/01); a nexus' first command POWER ON, RESET, OR BUS DEVICE
//     RESET OCCURRED (29/00); an I_T NEXUS RESET I_T NEXUS LOSS OCCURRED
//     (29/07).
//   - A WRITE whose data-out buffer is shorter than its transfer length
//     writes the whole blocks sent (libiscsi's residual tests expect it);
//     WRITE SAME and COMPARE AND WRITE need exactly their data.
package scsi
