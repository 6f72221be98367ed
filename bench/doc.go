// Package bench measures block I/O workloads against any iSCSI LUN through
// Lunway's own initiator (target/initiator): IOPS, MiB/s and latency
// percentiles at a chosen queue depth. `lunway bench` and the comparison
// scripts in this directory (Lunway against tgt, against the raw backing)
// use it; docs/PERFORMANCE.md collects their tables.
//
// The directory also holds the other benchmarks and their driver:
//
//   - bench/vs-tgt.sh: Lunway against tgt serving the same file;
//   - bench/paths (`lunway bench paths`): one workload through a direct LUN,
//     a VMDK or qcow2 image on ext4 on a LUN, tgt and the raw backing, with
//     the I/O amplification read from Lunway's counters;
//   - bench/run-all.sh (`make bench`): every benchmark that exists, then
//     the generated sections of docs/PERFORMANCE.md rewritten through
//     bench/cmd/perfdoc (package bench/perfdoc). A benchmark of another
//     area joins by putting a script in bench/<area>/*.sh that takes an
//     output directory and writes report.md there (or prints Markdown).
//
// Benchmarks report what they measured; they never pass or fail on a time.
package bench
