#!/usr/bin/env bash
# run.sh - the S3 benchmark (issue 5): blockmap LUNs on S3 (radosgw) with the local
# write-back cache and without it, an RBD LUN on the same cluster, and a local file
# LUN (the goal), all served by one Lunway daemon and measured in one run.
#
# Workloads (bench.Standard, what `lunway bench` runs over iSCSI with Lunway's Go
# initiator): 4 KiB random read and write at queue depth 1 and 32, 1 MiB sequential
# read and write at queue depth 8. Every LUN is prefilled once (so that reads hit
# data), and the LUNs are measured one after another, never at the same time; each
# round measures every LUN once. After ROUNDS rounds it prints medians and every
# LUN's IOPS as a share of the RBD LUN's (OUT/report.md). The bar of issue 5: with
# the cache, 4 KiB random writes at least as fast as the RBD LUN; the goal: the
# file LUN's speed until the log fills.
#
# Usage: bench/s3/run.sh [OUT_DIR]
# Knobs: ROUNDS=3 DURATION=10s SIZE_MIB=512
#        CEPH_ENV=DIR/env  use a running cluster with radosgw (ceph-up.sh's env)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-bench/out/s3}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
SIZE_MIB=${SIZE_MIB:-512}
# shellcheck source=bench/lib.sh
source bench/lib.sh
LPORT=$(free_port)
IQN=iqn.2026-11.dev.lunway:s3bench
log() { echo "== $(date +%T) $*" >&2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

log "building"
go build -tags ceph,pacific -o "$OUT/lunway" ./cmd/lunway
go build -o "$OUT/cephbench" ./bench/ceph

CLUSTER=
LPID=
cleanup() {
  [[ -n "$LPID" ]] && stop_pid "$LPID"
  stop_cluster
  return 0 # under set -e, a false test here would become the exit status
}
trap cleanup EXIT

use_cluster "$OUT/cluster" CEPH_RGW_PORT="$(free_port)" CEPH_WITH_RGW=1 || exit 1
[[ -n "${CEPH_RGW_ENDPOINT:-}" ]] || { echo "the cluster has no radosgw (CEPH_WITH_RGW=1)" >&2; exit 1; }
CONF=$CEPH_CONF; KEYRING=$CEPH_KEYRING; POOL=$CEPH_POOL
IMAGE=lw-s3bench-$$
BUCKET=lw-s3bench-$$
rbd -c "$CONF" --keyring "$KEYRING" create --size "$SIZE_MIB" "$POOL/$IMAGE"

S3="endpoint: \"$CEPH_RGW_ENDPOINT\", bucket: $BUCKET, path_style: true, create_bucket: true, access_key: $CEPH_S3_ACCESS_KEY, secret_key: $CEPH_S3_SECRET_KEY"
cat >"$OUT/lunway.yaml" <<YAML
data_dir: $OUT/data
log: {level: warn}
portal_groups: [{tag: 1, listen: ["127.0.0.1:$LPORT"]}]
targets:
  - name: $IQN
    luns:
      - {lun: 0, backend: {type: rbd, image: $IMAGE, ceph: {conf_file: $CONF, keyring: $KEYRING, pool: $POOL}}}
      - {lun: 1, size: ${SIZE_MIB}MiB, backend: {type: blockmap, volume: cached, store: {type: s3, s3: {$S3}}, cache: {path: cache1, size: 1GiB}}}
      - {lun: 2, size: ${SIZE_MIB}MiB, backend: {type: blockmap, volume: direct, store: {type: s3, s3: {$S3}}}}
      - {lun: 3, size: ${SIZE_MIB}MiB, backend: {type: file, path: lun3.img}}
YAML
rm -rf "$OUT/data"

start_lunway() {
  "$OUT/lunway" serve --config "$OUT/lunway.yaml" >>"$OUT/lunway.log" 2>&1 & LPID=$!
  await_listener lunway "$LPID" "$LPORT" "$OUT/lunway.log" || exit 1
}
stop_lunway() { kill "$LPID"; wait "$LPID" || true; LPID=; }
lbench() { "$OUT/lunway" bench -o json --duration "$DURATION" "$@"; }
url() { echo "iscsi://127.0.0.1:$LPORT/$IQN/$1"; }

start_lunway
for lun in 0 1 2 3; do
  log "prefilling LUN $lun"
  "$OUT/lunway" bench --prefill --duration 1ms --workloads none "$(url $lun)" >/dev/null
done

A=(); B=(); C=(); D=()
for r in $(seq "$ROUNDS"); do
  log "round $r: RBD LUN"
  lbench "$(url 0)" >"$OUT/rbd-$r.json"; A+=("$OUT/rbd-$r.json")
  log "round $r: S3 volume with the cache"
  lbench "$(url 1)" >"$OUT/s3-cache-$r.json"; B+=("$OUT/s3-cache-$r.json")
  log "round $r: S3 volume without a cache"
  lbench "$(url 2)" >"$OUT/s3-direct-$r.json"; C+=("$OUT/s3-direct-$r.json")
  log "round $r: file LUN"
  lbench "$(url 3)" >"$OUT/file-$r.json"; D+=("$OUT/file-$r.json")
done
stop_lunway

{
  echo "Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/{print $2}') GiB RAM, kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
  echo "Ceph: $(ceph --version | cut -d' ' -f3-5), one memstore OSD, pool size 1, radosgw on loopback; LUNs of ${SIZE_MIB} MiB, prefilled."
  echo "LUNs: \`lunway-rbd\` an RBD image; \`s3-cache\` a blockmap volume on S3 behind a 1 GiB local write-back log and the read cache;"
  echo "\`s3-direct\` the same without a cache (the volume's own segment buffer only); \`file\` a local file LUN (the goal)."
  echo "Each workload runs $DURATION; $ROUNDS rounds, interleaved; ratios to the RBD LUN."
  echo
  IFS=,
  "$OUT/cephbench" report "lunway-rbd=${A[*]}" "s3-cache=${B[*]}" "s3-direct=${C[*]}" "file=${D[*]}"
} | tee "$OUT/report.md"
rbd -c "$CONF" --keyring "$KEYRING" rm "$POOL/$IMAGE" >/dev/null 2>&1 || true
rm -rf "$OUT/data"
