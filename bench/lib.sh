# lib.sh - shell helpers shared by the benchmark scripts (sourced, not run).

# free_port prints a TCP port that nothing listens on now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# listening PORT PID: PID itself (not some other process) listens on PORT.
listening() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -q "pid=$2,"; }

# await_listener NAME PID PORT LOG: wait (up to 30 s) until process PID listens on
# PORT; fail with the tail of LOG when it exits or never does.
await_listener() {
  local name=$1 pid=$2 port=$3 logf=$4
  for _ in $(seq 600); do
    kill -0 "$pid" 2>/dev/null || { echo "$name did not start: $(tail -2 "$logf")" >&2; return 1; }
    listening "$port" "$pid" && return 0
    sleep 0.05
  done
  echo "$name is not listening on $port: $(tail -2 "$logf")" >&2
  return 1
}

# private_cluster DIR LOG [VAR=VALUE...]: start a throwaway Ceph cluster in DIR on
# ports of its own (extra ceph-up.sh settings as arguments) and source its env.
# The memstore OSD may use 8 GiB of RAM (it grows as data lands): three rounds
# of 10 s of 1 MiB writes to a RADOS volume write several GiB before garbage
# collection catches up, and a full memstore hangs instead of failing.
private_cluster() {
  local dir=$1 logf=$2 base=$((22000 + RANDOM % 80 * 100))
  shift 2
  # Another cluster's settings (a sourced env file) must not reach ceph-up.sh.
  ( for v in $(compgen -e | grep '^CEPH_'); do unset "$v"; done
    env CEPH_MON_V2_PORT="$(free_port)" CEPH_MON_V1_PORT="$(free_port)" CEPH_PORT_MIN=$base \
      CEPH_PORT_MAX=$((base + 60)) CEPH_MEMSTORE_BYTES=$((8 << 30)) CEPH_NO_INSTALL=1 "$@" \
      bash deploy/dev/ceph-up.sh "$dir" ) >"$logf" 2>&1 || { tail "$logf" >&2; return 1; }
  # shellcheck disable=SC1091
  source "$dir/env"
}

# stop_pid PID: SIGTERM, and SIGKILL after 5 s (tgtd ignores SIGTERM while it
# has targets); then reap it.
stop_pid() {
  local pid=$1
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# use_cluster DIR [VAR=VALUE...]: the cluster of $CEPH_ENV (ceph-up.sh's env file) when
# set, else a private one started in DIR, whose directory CLUSTER names for stop_cluster.
use_cluster() {
  if [[ -n "${CEPH_ENV:-}" ]]; then
    # shellcheck disable=SC1090
    source "$CEPH_ENV"
    return
  fi
  CLUSTER=$1
  shift
  echo "== $(date +%T) starting a private cluster in $CLUSTER" >&2
  private_cluster "$CLUSTER" "$(dirname "$CLUSTER")/ceph-up.log" "$@"
}

# stop_cluster: stop and remove the private cluster, if use_cluster started one.
stop_cluster() {
  [[ -z "${CLUSTER:-}" ]] || bash deploy/dev/ceph-down.sh "$CLUSTER" --purge --fast >/dev/null 2>&1 || true
}
