#!/usr/bin/env bash
# import-export.sh - lunway import/export against qemu-img convert, to and from an
# iscsi:// LUN of a running daemon, per image format (issue 8's benchmark).
#
# Usage: bench/image/import-export.sh [OUTDIR]   (writes OUTDIR/report.md; `make bench` runs it)
# Knobs: SIZE=4G FRACTION=0.25 ROUNDS=3 FORMATS=raw,qcow2,vmdk,vmdk-stream,vhd,vhdx
#        BACKEND=file|blockmap SCRATCH=/var/tmp
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-bench/out/image}
mkdir -p "$OUT"
for c in qemu-img qemu-io; do
  command -v "$c" >/dev/null || { echo "$c missing: apt-get install qemu-utils qemu-block-extra" >&2; exit 1; }
done
go build -o "$OUT/lunway" ./cmd/lunway
go run ./bench/image -lunway "$OUT/lunway" -size "${SIZE:-4G}" -fraction "${FRACTION:-0.25}" \
  -runs "${ROUNDS:-3}" -formats "${FORMATS:-}" -backend "${BACKEND:-file}" \
  -dir "${SCRATCH:-${TMPDIR:-/tmp}}" -out "$OUT/report.md"
rm -f "$OUT/lunway"
