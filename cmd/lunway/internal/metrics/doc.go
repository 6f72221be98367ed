// Package metrics publishes the daemon's statistics for Prometheus. A
// Collector reads one Snapshot from its Source at scrape time (the SCSI
// LU counters, blockmap volume stats, cache stats, backend health, iSCSI
// target counters) and turns it into metrics; nothing is updated on the
// I/O path.
//
// Metric names (all prefixed lunway_) and labels are documented in
// docs/OPERATIONS.md, with the alerts worth setting on them.
package metrics
