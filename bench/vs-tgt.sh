#!/usr/bin/env bash
# vs-tgt.sh - Lunway against Debian's tgt, serving the same backing file, in one run.
#
# Each round serves the file with Lunway, runs the workloads (lunway bench:
# 4 KiB random read/write at queue depth 1 and 32, 1 MiB sequential read/write at
# queue depth 8), stops it, then serves the same file with tgtd and runs the same
# workloads. After ROUNDS rounds it prints medians and the Lunway/tgt ratios as a
# Markdown table (also written to OUT/report.md).
#
# Usage: bench/vs-tgt.sh [OUT_DIR]     Knobs: ROUNDS=3 DURATION=10s SIZE=1GiB
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/out/vs-tgt}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
SIZE=${SIZE:-1GiB}
# Ports: LPORT and TPORT when given, else free ones (others may run this at the same time).
# shellcheck source=bench/lib.sh
source bench/lib.sh
LPORT=${LPORT:-$(free_port)}
TPORT=${TPORT:-$(free_port)}
TCTL=$((20000 + TPORT % 10000))   # tgtd's own control socket, never another tgtd's
IQN=iqn.2026-11.dev.lunway:bench
TIQN=iqn.2026-11.dev.lunway:tgt
command -v tgtd >/dev/null || { echo "tgtd missing: apt-get install tgt" >&2; exit 1; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
go build -o "$OUT/lunway" ./cmd/lunway
go build -o "$OUT/benchreport" ./bench/cmd/benchreport
DATA="$OUT/data"
rm -rf "$DATA"; mkdir -p "$DATA"
IMG="$DATA/disk.img"
cat >"$OUT/lunway.yaml" <<YAML
data_dir: $DATA
log: {level: warn}
portal_groups: [{tag: 1, listen: ["127.0.0.1:$LPORT"]}]
targets:
  - name: $IQN
    luns: [{lun: 0, size: $SIZE, backend: {type: file, path: $IMG}}]
YAML

LPID=; TPID=
cleanup() {
  [[ -n "$LPID" ]] && stop_pid "$LPID"
  [[ -n "$TPID" ]] && stop_pid "$TPID"
  return 0 # under set -e, a false test here would become the exit status
}
trap cleanup EXIT


start_lunway() {
  "$OUT/lunway" serve --config "$OUT/lunway.yaml" >>"$OUT/lunway.log" 2>&1 & LPID=$!
  await_listener lunway "$LPID" "$LPORT" "$OUT/lunway.log" || exit 1
}
stop_lunway() { kill "$LPID"; wait "$LPID" || true; LPID=; }

start_tgt() {
  tgtd -f -C "$TCTL" --iscsi "portal=127.0.0.1:$TPORT" >>"$OUT/tgtd.log" 2>&1 & TPID=$!
  for _ in $(seq 100); do tgtadm -C "$TCTL" --lld iscsi --op show --mode target >/dev/null 2>&1 && break; sleep 0.1; done
  tgtadm -C "$TCTL" --lld iscsi --op new --mode target --tid 1 -T "$TIQN"
  tgtadm -C "$TCTL" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$IMG"
  tgtadm -C "$TCTL" --lld iscsi --op bind --mode target --tid 1 -I ALL
  await_listener tgtd "$TPID" "$TPORT" "$OUT/tgtd.log" || exit 1
}
stop_tgt() { stop_pid "$TPID"; TPID=; }

# Allocate the whole file once (random data), so that reads hit data on both targets.
start_lunway
"$OUT/lunway" bench --prefill --duration 1ms --workloads none "iscsi://127.0.0.1:$LPORT/$IQN/0" >/dev/null
stop_lunway

L=(); T=()
for r in $(seq "$ROUNDS"); do
  echo "round $r: lunway" >&2
  start_lunway
  "$OUT/lunway" bench -o json --duration "$DURATION" "iscsi://127.0.0.1:$LPORT/$IQN/0" >"$OUT/lunway-$r.json"
  stop_lunway
  L+=("$OUT/lunway-$r.json")
  echo "round $r: tgt" >&2
  start_tgt
  "$OUT/lunway" bench -o json --duration "$DURATION" "iscsi://127.0.0.1:$TPORT/$TIQN/1" >"$OUT/tgt-$r.json"
  stop_tgt
  T+=("$OUT/tgt-$r.json")
done
IFS=,
"$OUT/benchreport" "lunway=${L[*]}" "tgt=${T[*]}" | tee "$OUT/report.md"
