// Package scsi is the SCSI device server: it interprets CDBs (SPC-4, SBC-3)
// against logical units backed by blockdev.Devices, keeps per-nexus state
// (unit attentions, reservations) and the task set that task management
// acts on. It knows nothing of iSCSI; transport.go is its contract with a
// transport.
package scsi
