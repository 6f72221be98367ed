#!/usr/bin/env bash
# test.sh - every test of the project: the README's test command (`make test`) runs this.
#
# It installs what the tests need when missing (Debian packages, Go modules), then runs:
#   1. gofmt and go vet (also with the ceph build tag)
#   2. go test -race ./... with LUNWAY_REQUIRE_TOOLS=1, so that a test whose external
#      program (iscsi-test-cu, qemu-img, tgtd ...) is missing fails instead of skipping;
#      this includes the libiscsi conformance run against the daemon
#   3. a short run of every native fuzzer (FUZZTIME, default 5s each)
#   4. the Ceph tests (-tags ceph,pacific) against a throwaway single-node cluster
#      (mon, osd on memstore, radosgw) started and stopped here
#
# Knobs: FUZZTIME=5s  SKIP_CEPH=1  SKIP_FUZZ=1  SKIP_INSTALL=1  GOFLAGS=...
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
log() { echo "== $(date +%T) $*" >&2; }

# ------------------------------------------------------------------ dependencies
PKGS=(libiscsi-bin qemu-utils qemu-block-extra tgt tgt-rbd sg3-utils fio gcc
      ceph-mon ceph-osd ceph-common radosgw librados-dev librbd-dev)
if [[ "${SKIP_INSTALL:-0}" != 1 ]]; then
  missing=()
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if (( ${#missing[@]} )); then
    log "installing ${missing[*]}"
    SUDO=; [[ $(id -u) == 0 ]] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
command -v go >/dev/null || { echo "go not found in PATH" >&2; exit 1; }
log "go mod download"
go mod download

# ------------------------------------------------------------------ static checks
log "gofmt"
bad=$(gofmt -l $(git ls-files '*.go') 2>/dev/null || true)
if [[ -n "$bad" ]]; then echo "gofmt needed:"; echo "$bad"; exit 1; fi
log "go vet"
go vet ./...
go vet -tags ceph,pacific ./...

# ------------------------------------------------------------------ unit, protocol, conformance
export LUNWAY_REQUIRE_TOOLS=1
log "go test -race ./..."
go test -race -timeout 30m ./...

# ------------------------------------------------------------------ fuzzers
if [[ "${SKIP_FUZZ:-0}" != 1 ]]; then
  FUZZTIME=${FUZZTIME:-5s}
  # Go 1.26's fuzz coordinator can report "context deadline exceeded" when
  # -fuzztime expires while a worker is mid-call (go.dev/issue/75804, fixed in
  # Go 1.27). That exit carries no finding: a real one always writes
  # "Failing input written to testdata/fuzz/...". Such a run is retried once;
  # a second bare deadline is reported as a flake. Anything else fails.
  deadline_flake() {
    grep -q 'context deadline exceeded' <<<"$1" &&
      ! grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:' <<<"$1"
  }
  flakes=0
  for pkg in $(go list ./...); do
    for fz in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
      for attempt in 1 2; do
        log "fuzz $pkg $fz ($FUZZTIME)"
        if out=$(go test -run '^$' -fuzz "^${fz}\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1); then
          break
        fi
        if deadline_flake "$out"; then
          if [[ $attempt == 1 ]]; then
            log "fuzz $pkg $fz: deadline race of the Go fuzz engine, no finding; running again"
            continue
          fi
          log "fuzz $pkg $fz: deadline race twice, no finding (counted as a flake)"
          flakes=$((flakes + 1))
          break
        fi
        printf '%s\n' "$out" | tail -40 >&2
        log "fuzz $pkg $fz FAILED"
        exit 1
      done
    done
  done
  log "fuzzers done ($flakes engine flakes)"
fi

# ------------------------------------------------------------------ Ceph
if [[ "${SKIP_CEPH:-0}" != 1 ]]; then
  CEPH_DIR=$(mktemp -d /tmp/lunway-ceph-XXXXXX)
  trap 'bash "$ROOT/deploy/dev/ceph-down.sh" "$CEPH_DIR" --purge --fast >/dev/null 2>&1 || true' EXIT
  log "starting a throwaway Ceph cluster in $CEPH_DIR"
  CEPH_WITH_RGW=1 CEPH_MEMSTORE_BYTES=$((3 << 30)) bash deploy/dev/ceph-up.sh "$CEPH_DIR" >/dev/null
  set -a; source "$CEPH_DIR/env"; set +a
  export LUNWAY_CEPH_ENV="$CEPH_DIR/env"
  # Tests that need the cluster live in files with the `ceph` build tag and are
  # named TestCeph* or TestS3*; the rest of the tree already ran above.
  log "go test -tags ceph,pacific -run '^(TestCeph|TestS3)' (Ceph and S3 tests)"
  go test -race -timeout 30m -tags ceph,pacific -run '^(TestCeph|TestS3)' ./...
fi
log "all tests passed"
