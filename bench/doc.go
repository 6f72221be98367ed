// Package bench measures block I/O workloads against any iSCSI LUN through
// Lunway's own initiator (target/initiator): IOPS, MiB/s and latency
// percentiles at a chosen queue depth. `lunway bench` and the comparison
// scripts in this directory (Lunway against tgt, against the raw backing)
// use it; docs/PERFORMANCE.md collects their tables.
//
// Benchmarks report what they measured; they never pass or fail on a time.
package bench
