#!/usr/bin/env bash
# run-all.sh - every benchmark of the project, side by side on this machine, then
# docs/PERFORMANCE.md regenerated (`make bench` runs this).
#
# Each benchmark writes a Markdown section under OUT; bench/cmd/perfdoc puts the
# sections between the <!-- BEGIN/END GENERATED name --> markers of the document, so
# the hand-written prose around them survives. A benchmark that fails or is missing
# leaves a section that says so; the others still run.
#
#   machine   CPU, cores, memory, kernel, disk, load, commit
#   vs-tgt    bench/vs-tgt.sh: Lunway vs tgt on the same file (issue 2)
#   blockmap  go test -bench ./blockmap/: blockmap volume vs plain file (medians of -count runs;
#             the GC steady-state overwrite case for GOBENCH_OVERWRITE_TIME)
#   paths     lunway bench paths: direct LUN vs VMDK/qcow2 on ext4 on a LUN vs tgt vs raw (issue 9)
#   image, ceph, s3   every bench/<dir>/*.sh, when the directory exists: its OUT/<dir>/report.md
#                     (or its standard output)
#
# Usage: bench/run-all.sh [SECTION...]    (default: all)
# Knobs: OUT=bench/out ROUNDS=3 PATHS_DURATION=5s VS_TGT_DURATION=5s GOBENCH_COUNT=3
#        GOBENCHTIME=1s GOBENCH_OVERWRITE_TIME=10s DOC=docs/PERFORMANCE.md
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
DOC=${DOC:-docs/PERFORMANCE.md}
ROUNDS=${ROUNDS:-3}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SECTIONS=("$@")
(( ${#SECTIONS[@]} )) || SECTIONS=(machine vs-tgt blockmap paths image ceph s3)
log() { echo "== $(date +%T) $*" >&2; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

go build -o "$OUT/perfdoc" ./bench/cmd/perfdoc || exit 1
go build -o "$OUT/lunway" ./cmd/lunway || exit 1

# section NAME CMD...: run CMD (which writes $OUT/NAME/section.md); on failure the
# section says so, with the tail of the log.
section() {
  local name=$1; shift
  local dir="$OUT/$name"
  rm -rf "$dir"; mkdir -p "$dir"
  log "$name (load $(load))"
  local l0; l0=$(load)
  local t0=$SECONDS
  if "$@" "$dir" >"$dir/log" 2>&1 && [[ -s "$dir/section.md" ]]; then
    printf '\n_Run by `make bench` on %s in %d s; load average %s at start, %s at end._\n' \
      "$(date -u +'%Y-%m-%d %H:%M UTC')" $((SECONDS - t0)) "$l0" "$(load)" >>"$dir/section.md"
  else
    log "$name FAILED (see $dir/log)"
    { echo "**Not measured in the last run**: \`$*\` failed on $(date -u +'%Y-%m-%d %H:%M UTC'):"
      echo; echo '```'; tail -n 15 "$dir/log"; echo '```'; } >"$dir/section.md"
  fi
  GENERATED+=("$name=$dir/section.md")
}

machine() {
  local dir=$1 cpu mem disk fs
  cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
  mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
  fs=$(stat -f -c %T . 2>/dev/null)
  disk=$(df -h . | awk 'NR==2 {print $2 " (" $4 " free) on " $1}')
  {
    echo "| | |"
    echo "|---|---|"
    echo "| CPU | $cpu |"
    echo "| cores | $(nproc) (shared with other work: see the load averages) |"
    echo "| memory | $mem |"
    echo "| kernel | $(uname -sr) |"
    echo "| disk of the work tree | $disk, filesystem $fs |"
    echo "| Go | $(go version | cut -d' ' -f3-) |"
    echo "| QEMU, tgt | $(qemu-img --version 2>/dev/null | head -1 | cut -d' ' -f3), $(dpkg-query -W -f='${Version}' tgt 2>/dev/null) |"
    echo "| commit | $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes in the tree)') |"
    echo "| load average at start | $(load) |"
  } >"$dir/section.md"
}

vs_tgt() {
  local dir=$1
  ROUNDS=$ROUNDS DURATION=${VS_TGT_DURATION:-5s} bash bench/vs-tgt.sh "$dir/run" &&
    { echo "${ROUNDS} rounds, ${VS_TGT_DURATION:-5s} per workload, medians; the last column is Lunway's IOPS over tgt's."; echo;
      cat "$dir/run/report.md"; } >"$dir/section.md"
  local rc=$?
  rm -rf "$dir/run/data"
  return $rc
}

blockmap() {
  # The steady-state overwrite case runs apart, for GOBENCH_OVERWRITE_TIME (10s):
  # the collector looks for work every 2 s, so a 1 s run never sees it.
  local dir=$1 count=${GOBENCH_COUNT:-3} bt=${GOBENCHTIME:-1s} ot=${GOBENCH_OVERWRITE_TIME:-10s}
  local main='(Volume|Paired)/op=(randwrite|randread|seqwrite|seqread)'
  { go test -run '^$' -bench "$main" -benchmem -count "$count" -benchtime "$bt" -timeout 60m ./blockmap/ &&
    go test -run '^$' -bench 'Volume/op=overwrite' -benchmem -count "$count" -benchtime "$ot" -timeout 60m ./blockmap/
  } | tee "$dir/bench.txt" || return 1
  { echo "\`go test -run '^\$' -bench '$main' -benchmem -count $count -benchtime $bt ./blockmap/\`,"
    echo "then the overwrite case with \`-bench 'Volume/op=overwrite' -benchtime $ot\`; medians:"; echo
    "$OUT/perfdoc" gobench <"$dir/bench.txt"; } >"$dir/section.md"
}

paths() {
  local dir=$1 guest
  guest=$(bash bench/paths/guest/build.sh) || echo "guest build failed: the guest paths will say why" >&2
  "$OUT/lunway" bench paths --rounds "$ROUNDS" --duration "${PATHS_DURATION:-5s}" \
    --guest-dir "${guest:-/nonexistent}" --out "$dir/report" --chart-prefix perf/paths- || return 1
  mkdir -p docs/perf
  cp "$dir/report/iops.svg" docs/perf/paths-iops.svg
  cp "$dir/report/amplification.svg" docs/perf/paths-amplification.svg
  cp "$dir/report/report.json" docs/perf/paths.json
  cp "$dir/report/report.md" "$dir/section.md"
}

# Benchmarks of other areas: every bench/<name>/*.sh, when present.
others() {
  local name=$1 dir=$2 s found=0
  for s in bench/"$name"/*.sh; do
    [[ -f "$s" ]] || continue
    found=1
    log "$s"
    bash "$s" "$dir/$(basename "$s" .sh)" >"$dir/$(basename "$s" .sh).out" || return 1
    if [[ -s "$dir/$(basename "$s" .sh)/report.md" ]]; then
      { echo "\`$s\`:"; echo; cat "$dir/$(basename "$s" .sh)/report.md"; echo; } >>"$dir/section.md"
    else
      { echo "\`$s\`:"; echo; cat "$dir/$(basename "$s" .sh).out"; echo; } >>"$dir/section.md"
    fi
  done
  (( found )) || echo "No benchmark script in \`bench/$name/\` yet." >"$dir/section.md"
}

GENERATED=()
for s in "${SECTIONS[@]}"; do
  case "$s" in
    machine) section machine machine ;;
    vs-tgt) section vs-tgt vs_tgt ;;
    blockmap) section blockmap blockmap ;;
    paths) section paths paths ;;
    image|ceph|s3) section "$s" others "$s" ;;
    *) echo "unknown section $s" >&2; exit 2 ;;
  esac
done
"$OUT/perfdoc" replace "$DOC" "${GENERATED[@]}" && log "updated $DOC: ${SECTIONS[*]}"
