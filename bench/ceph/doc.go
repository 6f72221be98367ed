// Command ceph is the helper of bench/ceph/run.sh, the Ceph benchmark:
// the librbd ceiling (`rbd bench`) against a Lunway LUN on an RBD image, a
// Lunway LUN on a blockmap volume in RADOS and Debian's tgt with its rbd
// backing store, on one cluster in one run.
//
//	ceph librbd -c CONF -k KEYRING -image POOL/IMAGE -duration 10s > run.json
//	ceph libiscsi -url iscsi://HOST:PORT/IQN/LUN -duration 10s > run.json
//	ceph report librbd=a.json,b.json lunway-rbd=c.json,d.json ...
//	ceph pairs librbd=a1.json,a2.json lunway-rbd=c1.json,c2.json ...
//
// `librbd` runs `rbd bench` for each of bench.Standard's workloads (the ones
// `lunway bench` runs over iSCSI) for the given duration and writes the
// results as `lunway bench -o json` does. `libiscsi` measures 4 KiB random
// reads at queue depth 1 and 32 through iscsi-perf (libiscsi's benchmark)
// and writes them the same way, named "randread-4k-qdN (libiscsi)".
// `report` takes the median of each workload over the runs of every label
// and prints a Markdown table of IOPS with each label's ratio to the first
// (the ceiling); a libiscsi row is compared with the ceiling's row of the
// same shape. `pairs` takes runs made in pairs (the Nth file of each label
// measured right next to the ceiling's Nth) and prints every pair's ratio
// and their median, which the cluster's drift between pairs does not move.
package main
