// Package paths is the I/O path benchmark: it runs one workload through
// several I/O paths in one run on one machine and measures what each
// layer between a guest and its storage costs.
//
//   - baseline: the backing file with no iSCSI (the ceiling), and Debian's
//     tgtd serving the same file;
//   - direct: a Lunway LUN is the guest's disk (a plain file, or a blockmap
//     volume), reached by Lunway's Go initiator or through QEMU's block
//     layer (qemu-nbd over libiscsi);
//   - stacked: the guest's disk is a VMDK or qcow2 image, either stored
//     straight on the LUN or as a file on an ext4 filesystem on the LUN,
//     as a hypervisor's datastore would hold it. The filesystem layer is
//     Linux's own ext4 in a small QEMU guest under software emulation
//     (TCG): ext4 stands for VMFS, the guest's virtio disk attached by
//     QEMU's libiscsi for the host's iSCSI path, qemu-nbd in the guest for
//     the hypervisor's VMDK/qcow2 driver (bench/paths/guest/build.sh
//     builds that guest in a cache directory).
//
// Every path is driven by the same engine (Run) through a Device: iSCSI
// (ISCSIDevice), NBD (NBD, a small client) or a file (FileDevice). Lunway
// runs in-process (StartLunway) with the daemon's packages and defaults,
// so the benchmark reads its counters directly: the SCSI commands that
// reached each LUN and the backend operations and bytes below it. Their
// difference over a run, per guest operation, is the I/O amplification
// (Amplify). RunAll repeats every path and workload for several rounds
// and returns a Report: JSON for machines, Markdown and text tables of
// medians, and SVG charts drawn by this package (Chart).
//
// Benchmarks report what they measured; they never pass or fail on a time.
package paths
