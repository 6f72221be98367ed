#!/usr/bin/env bash
# run.sh - the Ceph benchmark: librbd directly (`rbd bench`, the ceiling), a Lunway LUN on
# an RBD image, a Lunway LUN on a blockmap volume in RADOS, and Debian's tgt with its rbd
# backing store, on one throwaway cluster in one run.
#
# Workloads (bench.Standard, what `lunway bench` runs over iSCSI): 4 KiB random read and
# write at queue depth 1 and 32, 1 MiB sequential read and write at queue depth 8. librbd
# runs the same shapes with `rbd bench --io-threads QD`. The three iSCSI targets are
# measured with `lunway bench` (the Go initiator) and never run at the same time; 4 KiB
# random reads on the RBD LUN and on tgt are also measured through libiscsi, the initiator
# QEMU and Proxmox use (`iscsi-perf`, rows marked "(libiscsi)", compared with librbd's run
# of the same shape): on this machine every client shares the cores with Ceph and the
# target, and libiscsi costs less CPU per command than the Go initiator. The RBD
# image is shared by librbd, the Lunway RBD LUN and tgt (prefilled once, so reads hit data).
# Each round runs every target once; after ROUNDS rounds it prints medians and every
# target's IOPS as a share of librbd's (OUT/report.md).
#
# librbd's cache is write-through until its client's first flush
# (rbd_cache_writethrough_until_flush), and rbd bench runs past that point. The two
# iSCSI targets on the image therefore start each run with --prefill, whose writes end
# with SYNCHRONIZE CACHE, as an initiator's operating system flushes at mount: all three
# then measure librbd in the same cache mode.
#
# Usage: bench/ceph/run.sh [OUT_DIR]
# After the rounds, PAIRS pairs of 4 KiB random reads at queue depth 32 (librbd, then the
# RBD LUN through libiscsi and the Go initiator, or the other way round) give the ratio of
# each pair and their median (`cephbench pairs`).
#
# Knobs: ROUNDS=3 PAIRS=5 DURATION=10s SIZE_MIB=1024
#        CEPH_ENV=DIR/env  use a running cluster (ceph-up.sh's env) instead of a private one
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-bench/out/ceph}
ROUNDS=${ROUNDS:-3}
PAIRS=${PAIRS:-5}
DURATION=${DURATION:-10s}
SIZE_MIB=${SIZE_MIB:-1024}
# shellcheck source=bench/lib.sh
source bench/lib.sh
LPORT=$(free_port)
TPORT=$(free_port)
TCTL=$((20000 + TPORT % 10000))   # tgtd's own control socket, never another tgtd's
IQN=iqn.2026-11.dev.lunway:cephbench
TIQN=iqn.2026-11.dev.lunway:tgtrbd
log() { echo "== $(date +%T) $*" >&2; }
command -v tgtd >/dev/null || { echo "tgtd missing: apt-get install tgt tgt-rbd" >&2; exit 1; }
command -v iscsi-perf >/dev/null || { echo "iscsi-perf missing: apt-get install libiscsi-bin" >&2; exit 1; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

log "building"
go build -tags ceph,pacific -o "$OUT/lunway" ./cmd/lunway
go build -o "$OUT/cephbench" ./bench/ceph

CLUSTER=
LPID=; TPID=
cleanup() {
  [[ -n "$LPID" ]] && stop_pid "$LPID"
  [[ -n "$TPID" ]] && stop_pid "$TPID"
  stop_cluster
  return 0 # under set -e, a false test here would become the exit status
}
trap cleanup EXIT

use_cluster "$OUT/cluster" || exit 1
CONF=$CEPH_CONF; KEYRING=$CEPH_KEYRING; POOL=$CEPH_POOL
IMAGE=lw-bench-$$
NS=lw-bench-$$
R() { rbd -c "$CONF" --keyring "$KEYRING" "$@"; }

log "creating and prefilling $POOL/$IMAGE (${SIZE_MIB} MiB)"
R create --size "$SIZE_MIB" "$POOL/$IMAGE"
R bench --io-type write --io-size 1M --io-threads 8 --io-pattern seq --io-total "${SIZE_MIB}M" "$POOL/$IMAGE" >/dev/null

cat >"$OUT/lunway.yaml" <<YAML
data_dir: $OUT/data
log: {level: warn}
portal_groups: [{tag: 1, listen: ["127.0.0.1:$LPORT"]}]
targets:
  - name: $IQN
    luns:
      - {lun: 0, backend: {type: rbd, image: $IMAGE, ceph: {conf_file: $CONF, keyring: $KEYRING, pool: $POOL}}}
      - {lun: 1, size: ${SIZE_MIB}MiB, backend: {type: blockmap, volume: bench, store: {type: rados, ceph: {conf_file: $CONF, keyring: $KEYRING, pool: $POOL, namespace: $NS}}}}
YAML
rm -rf "$OUT/data"

start_lunway() {
  "$OUT/lunway" serve --config "$OUT/lunway.yaml" >>"$OUT/lunway.log" 2>&1 & LPID=$!
  await_listener lunway "$LPID" "$LPORT" "$OUT/lunway.log" || exit 1
}
stop_lunway() { kill "$LPID"; wait "$LPID" || true; LPID=; }
start_tgt() {
  tgtd -f -C "$TCTL" --iscsi "portal=127.0.0.1:$TPORT" >>"$OUT/tgtd.log" 2>&1 & TPID=$!
  for _ in $(seq 100); do tgtadm -C "$TCTL" --lld iscsi --op show --mode target >/dev/null 2>&1 && break; sleep 0.1; done
  tgtadm -C "$TCTL" --lld iscsi --op new --mode target --tid 1 -T "$TIQN"
  tgtadm -C "$TCTL" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 --bstype rbd \
    --backing-store "$POOL/$IMAGE" --bsopts "conf=$CONF"
  tgtadm -C "$TCTL" --lld iscsi --op bind --mode target --tid 1 -I ALL
  await_listener tgtd "$TPID" "$TPORT" "$OUT/tgtd.log" || exit 1
}
# tgtd ignores SIGTERM and a killed tgtd keeps the image's exclusive lock (the
# next client waits until Ceph breaks it): delete the target first, which
# closes the image, and break any lock left anyway.
stop_tgt() {
  tgtadm -C "$TCTL" --lld iscsi --op delete --mode target --tid 1 --force >/dev/null 2>&1 || true
  stop_pid "$TPID"; TPID=
  break_locks
}
break_locks() {
  R lock ls --format json "$POOL/$IMAGE" 2>/dev/null | python3 -c '
import json, sys
locks = json.load(sys.stdin)
if isinstance(locks, dict):
    locks = [dict(id=k, **v) for k, v in locks.items()]
for l in locks:
    print(l["id"] + "\t" + l["locker"])' | while IFS=$'\t' read -r id locker; do
    R lock rm "$POOL/$IMAGE" "$id" "$locker" || true
  done
}
lbench() { "$OUT/lunway" bench -o json --duration "$DURATION" "$@"; }

log "prefilling the RADOS volume"
start_lunway
"$OUT/lunway" bench --prefill --duration 1ms --workloads none "iscsi://127.0.0.1:$LPORT/$IQN/1" >/dev/null
stop_lunway

A=(); B=(); C=(); D=()
for r in $(seq "$ROUNDS"); do
  log "round $r: librbd (rbd bench)"
  "$OUT/cephbench" librbd -c "$CONF" -k "$KEYRING" -image "$POOL/$IMAGE" -duration "$DURATION" >"$OUT/librbd-$r.json"
  A+=("$OUT/librbd-$r.json")
  log "round $r: lunway, RBD LUN and RADOS volume LUN"
  start_lunway
  lbench --prefill "iscsi://127.0.0.1:$LPORT/$IQN/0" >"$OUT/lunway-rbd-$r.json"
  # Before the RADOS LUN's run: its volume keeps writing to the cluster
  # (segments, checkpoints) for a while after its last workload.
  "$OUT/cephbench" libiscsi -duration "$DURATION" -url "iscsi://127.0.0.1:$LPORT/$IQN/0" >"$OUT/lunway-rbd-libiscsi-$r.json"
  lbench "iscsi://127.0.0.1:$LPORT/$IQN/1" >"$OUT/lunway-rados-$r.json"
  stop_lunway
  B+=("$OUT/lunway-rbd-$r.json" "$OUT/lunway-rbd-libiscsi-$r.json"); C+=("$OUT/lunway-rados-$r.json")
  log "round $r: tgt (bs_rbd)"
  start_tgt
  lbench --prefill "iscsi://127.0.0.1:$TPORT/$TIQN/1" >"$OUT/tgt-rbd-$r.json"
  "$OUT/cephbench" libiscsi -duration "$DURATION" -url "iscsi://127.0.0.1:$TPORT/$TIQN/1" >"$OUT/tgt-rbd-libiscsi-$r.json"
  stop_tgt
  D+=("$OUT/tgt-rbd-$r.json" "$OUT/tgt-rbd-libiscsi-$r.json")
done

# The bar (4 KiB random I/O at queue depth 32, 70 % of librbd) measured in pairs: librbd
# and the RBD LUN, through libiscsi and through the Go initiator, one right after the
# other (who goes first alternates), PAIRS times. librbd's own rate moved by 40 % between
# the rounds above, which are minutes apart; a pair's ratio does not see that drift. Reads
# only: a write from rbd bench moves the image's exclusive lock away from the daemon.
P_A=(); P_B=(); P_C=()
start_lunway
for p in $(seq "$PAIRS"); do
  log "pair $p: librbd and the RBD LUN, 4 KiB random reads at queue depth 32"
  pair_librbd() { "$OUT/cephbench" librbd -c "$CONF" -k "$KEYRING" -image "$POOL/$IMAGE" -duration "$DURATION" -only randread-4k-qd32 >"$OUT/pair-librbd-$p.json"; }
  pair_lun() {
    "$OUT/cephbench" libiscsi -duration "$DURATION" -qd 32 -url "iscsi://127.0.0.1:$LPORT/$IQN/0" >"$OUT/pair-libiscsi-$p.json"
    lbench --workloads randread-4k-qd32 "iscsi://127.0.0.1:$LPORT/$IQN/0" >"$OUT/pair-go-$p.json"
  }
  if (( p % 2 )); then pair_librbd; pair_lun; else pair_lun; pair_librbd; fi
  P_A+=("$OUT/pair-librbd-$p.json"); P_B+=("$OUT/pair-libiscsi-$p.json"); P_C+=("$OUT/pair-go-$p.json")
done
stop_lunway

{
  echo "Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/{print $2}') GiB RAM, kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
  echo "Ceph: $(ceph --version | cut -d' ' -f3-5), one memstore OSD, pool size 1; image ${SIZE_MIB} MiB, 4 MiB objects, default features"
  echo "Each workload runs $DURATION; $ROUNDS rounds, interleaved (librbd, Lunway, tgt). Rows marked (libiscsi): iscsi-perf -r -m QD (libiscsi $(dpkg-query -W -f '${Version}' libiscsi-bin 2>/dev/null || echo '?')), against librbd's row of the same shape."
  echo
  IFS=,
  "$OUT/cephbench" report "librbd=${A[*]}" "lunway-rbd=${B[*]}" "lunway-rados=${C[*]}" "tgt-rbd=${D[*]}"
  echo
  echo "In pairs ($PAIRS, each workload $DURATION, librbd and the Lunway RBD LUN one right after the other, who goes first alternating):"
  echo
  "$OUT/cephbench" pairs "librbd=${P_A[*]}" "lunway-rbd=${P_C[*]}" "lunway-rbd=${P_B[*]}"
} | tee "$OUT/report.md"
# A private cluster goes whole (cleanup); a shared one keeps nothing of ours. One rados
# process per object took minutes for the volume's thousands of objects, with the OSD
# busy all along: remove them a hundred at a time.
if [[ -n "${CEPH_ENV:-}" ]]; then
  R rm "$POOL/$IMAGE" >/dev/null 2>&1 || true
  rados -c "$CONF" --keyring "$KEYRING" -p "$POOL" -N "$NS" ls 2>/dev/null |
    xargs -r -n 100 rados -c "$CONF" --keyring "$KEYRING" -p "$POOL" -N "$NS" rm
fi
