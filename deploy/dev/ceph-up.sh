#!/usr/bin/env bash
# ceph-up.sh - bring up a throwaway single-node Ceph (pacific, Debian packages)
# cluster on loopback, entirely inside one data directory, for Lunway's tests
# and benchmarks. Installs the Debian packages first when they are missing.
#
# Usage: ceph-up.sh [DATA_DIR]          (default: a fresh mktemp -d)
#
# Environment knobs (all optional):
#   CEPH_OBJECTSTORE=memstore|bluestore   OSD backend (default memstore; falls
#                                         back to bluestore on a sparse file if
#                                         memstore fails)
#   CEPH_MEMSTORE_BYTES=4294967296        memstore "device" size (RAM, grows lazily;
#                                         OSD RSS is ~2-3x the data held; at 95 %
#                                         full the OSD blocks writes (clients hang))
#   CEPH_MEMSTORE_PAGE_SET=true           memstore sparse page-set objects (false =
#   CEPH_MEMSTORE_PAGE_SIZE=4096          one bufferlist per object: ~3x slower)
#   CEPH_BLUESTORE_BYTES=10737418240      sparse block file size for bluestore
#   CEPH_WITH_MGR=0|1                     start a ceph-mgr (default 0, ~300 MiB RSS).
#                                         Not needed for rados/rbd I/O; needed for
#                                         MgrCommand (go-ceph: hangs without one),
#                                         pool stats / `ceph df`, rbd/admin
#                                         (rbd_support) and PG stats in `ceph -s`.
#   CEPH_WITH_RGW=0|1                     start radosgw + create an S3 user (default 0)
#   CEPH_MON_V2_PORT=3301 CEPH_MON_V1_PORT=6790  (change these and the port
#                                         range to run two clusters side by side)
#   CEPH_PORT_MIN=6900 CEPH_PORT_MAX=6960 port range for osd/mgr messengers
#   CEPH_RGW_PORT=7480
#   CEPH_POOL=rbd  CEPH_PG_NUM=8
#   CEPH_EXTRA_CONF='opt = val'           extra lines for the [global] section
#
# On success prints (stdout, one per line, KEY=VALUE):
#   CEPH_DIR=... CEPH_CONF=... CEPH_KEYRING=... CEPH_POOL=... CEPH_MON_HOST=...
#   [CEPH_RGW_ENDPOINT=... CEPH_S3_ACCESS_KEY=... CEPH_S3_SECRET_KEY=...]
#   CEPH_READY elapsed=<seconds>
# The same KEY=VALUE lines are written to $DATA_DIR/env (sourceable).
# Stop with ceph-down.sh DATA_DIR.  On failure the daemons started so far are
# killed again.  Needs: ceph-mon ceph-osd ceph-common [ceph-mgr] [radosgw].
set -euo pipefail

T0=$(date +%s.%N)
log() { echo "[ceph-up $(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Install Debian's Ceph 16.2 (pacific) packages when missing (CEPH_NO_INSTALL=1 to refuse).
need_pkgs=()
for b in ceph ceph-mon ceph-osd ceph-authtool monmaptool rados rbd; do
  command -v "$b" >/dev/null || need_pkgs=(ceph-mon ceph-osd ceph-common)
done
if [[ "${CEPH_WITH_MGR:-0}" == 1 ]] && ! command -v ceph-mgr >/dev/null; then need_pkgs+=(ceph-mgr); fi
if [[ "${CEPH_WITH_RGW:-0}" == 1 ]] && ! command -v radosgw >/dev/null; then need_pkgs+=(radosgw); fi
if (( ${#need_pkgs[@]} )); then
  [[ "${CEPH_NO_INSTALL:-0}" == 1 ]] && die "missing Ceph packages: ${need_pkgs[*]}"
  [[ $(id -u) == 0 ]] || die "missing Ceph packages (${need_pkgs[*]}); run as root or apt-get install them"
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${need_pkgs[@]}" >&2 || { apt-get update -qq >&2 && apt-get install -y -qq "${need_pkgs[@]}" >&2; } \
    || die "apt-get install ${need_pkgs[*]} failed"
fi
for b in ceph ceph-mon ceph-osd ceph-authtool monmaptool rados rbd; do
  command -v "$b" >/dev/null || die "missing $b after install"
done

DIR=${1:-}
if [[ -z "$DIR" ]]; then DIR=$(mktemp -d /tmp/ceph-XXXXXX); fi
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
MARK="$DIR/.ceph-up-owned"

# Refuse to touch a non-empty directory we did not create, or a running cluster.
if [[ -n "$(ls -A "$DIR")" ]]; then
  [[ -f "$MARK" ]] || die "$DIR is not empty and was not created by ceph-up.sh"
  for p in "$DIR"/run/*.pid; do
    [[ -f "$p" ]] || continue
    pid=$(cat "$p" 2>/dev/null || true)
    st=$(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null || true)
    if [[ -n "$pid" && -n "$st" && "$st" != Z && "$st" != X ]]; then
      die "cluster in $DIR still running (pid $pid from $p); run ceph-down.sh $DIR first"
    fi
  done
  log "wiping previous (stopped) cluster state in $DIR"
  rm -rf "$DIR"/mon.* "$DIR"/osd.* "$DIR"/mgr.* "$DIR"/rgw.* "$DIR"/run "$DIR"/log \
         "$DIR"/ceph.conf "$DIR"/keyring "$DIR"/mon.keyring "$DIR"/monmap "$DIR"/env
fi
touch "$MARK"

OK=0
cleanup_on_failure() {
  [[ $OK == 1 ]] && return
  log "start-up failed; killing daemons started in $DIR"
  local f pid
  for f in "$DIR"/run/*.pid; do
    [[ -f "$f" ]] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    [[ -n "$pid" && -r /proc/$pid/cmdline ]] || continue
    if tr '\0' ' ' </proc/"$pid"/cmdline | grep -qF -- "$DIR/ceph.conf"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}
trap cleanup_on_failure EXIT

OBJECTSTORE=${CEPH_OBJECTSTORE:-memstore}
MEMSTORE_BYTES=${CEPH_MEMSTORE_BYTES:-4294967296}
MEMSTORE_PAGE_SET=${CEPH_MEMSTORE_PAGE_SET:-true}
MEMSTORE_PAGE_SIZE=${CEPH_MEMSTORE_PAGE_SIZE:-4096}
BLUESTORE_BYTES=${CEPH_BLUESTORE_BYTES:-10737418240}
WITH_MGR=${CEPH_WITH_MGR:-0}
WITH_RGW=${CEPH_WITH_RGW:-0}
MON_V2=${CEPH_MON_V2_PORT:-3301}
MON_V1=${CEPH_MON_V1_PORT:-6790}
PORT_MIN=${CEPH_PORT_MIN:-6900}
PORT_MAX=${CEPH_PORT_MAX:-6960}
RGW_PORT=${CEPH_RGW_PORT:-7480}
POOL=${CEPH_POOL:-rbd}
EXTRA_CONF=${CEPH_EXTRA_CONF:-}
MGR_GRACE=
if [[ "$WITH_MGR" != 1 ]]; then
  # without a mgr the mon raises MGR_DOWN (HEALTH_WARN) 120 s after mkfs
  MGR_GRACE="mon mgr mkfs grace = 315360000"
fi
PG_NUM=${CEPH_PG_NUM:-8}

CONF="$DIR/ceph.conf"
KEYRING="$DIR/keyring"
MON_HOST="[v2:127.0.0.1:$MON_V2,v1:127.0.0.1:$MON_V1]"
FSID=$(cat /proc/sys/kernel/random/uuid)
mkdir -p "$DIR/run" "$DIR/log"

write_conf() {
  cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon initial members = a
mon host = $MON_HOST
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
ms bind port min = $PORT_MIN
ms bind port max = $PORT_MAX
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
run dir = $DIR/run
pid file = $DIR/run/\$name.pid
crash dir = $DIR/crash
exec dir = $DIR/run
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = $PG_NUM
osd pool default pgp num = $PG_NUM
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon data avail warn = 1
mon data avail crit = 0
mon max pg per osd = 1000
# commit osdmap/paxos changes quickly (default 1 s batching makes every pool
# create/delete, snapshot and startup step ~1 s slower)
paxos propose interval = 0.01
paxos min wait = 0.001
${MGR_GRACE}
log to stderr = false
err to stderr = false
log to syslog = false
${EXTRA_CONF}

[mon]
admin socket = $DIR/run/\$name.asok
mon data = $DIR/\$name
log file = $DIR/log/\$name.log
mon cluster log file = $DIR/log/cluster.log

[mgr]
admin socket = $DIR/run/\$name.asok
mgr data = $DIR/\$name
log file = $DIR/log/\$name.log
mgr initial modules =

[osd]
admin socket = $DIR/run/\$name.asok
osd data = $DIR/\$name
log file = $DIR/log/\$name.log
osd objectstore = $OBJECTSTORE
memstore device bytes = $MEMSTORE_BYTES
memstore page set = $MEMSTORE_PAGE_SET
memstore page size = $MEMSTORE_PAGE_SIZE
bluestore block path = $DIR/\$name/block.file
bluestore block create = true
bluestore block size = $BLUESTORE_BYTES
bluestore fsck on mount = false
bluestore cache autotune = false
bluestore cache size = 268435456
osd memory target = 939524096
osd op num shards = 2
osd op num threads per shard = 2
osd crush update on start = true
osd max object name len = 256
osd max object namespace len = 64

[client]
# no admin sockets for CLI/library clients (parallel clients would collide)
admin socket =

[client.admin]
keyring = $KEYRING

[client.rgw.a]
keyring = $DIR/rgw.a/keyring
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
rgw data = $DIR/rgw.a
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw thread pool size = 32
rgw dns name = localhost
EOF
}
write_conf

C() { timeout 60 ceph -c "$CONF" --connect-timeout 30 "$@"; }
Cq() { # quiet unless it fails
  local out
  if ! out=$(C "$@" 2>&1); then log "'ceph $*' failed: $out"; return 1; fi
}

# ---------------------------------------------------------------- keys + mon
log "creating keys and monitor in $DIR"
ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool --create-keyring "$KEYRING" --gen-key -n client.admin \
  --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
ceph-authtool "$DIR/mon.keyring" --import-keyring "$KEYRING" >/dev/null
monmaptool --create --fsid "$FSID" --addv a "$MON_HOST" "$DIR/monmap" >/dev/null
mkdir -p "$DIR/mon.a"
ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring"
ceph-mon -c "$CONF" -i a
C -s >/dev/null || die "monitor did not come up (see $DIR/log/mon.a.log)"
Cq config set mon auth_allow_insecure_global_id_reclaim false || true
log "mon.a up"

# ---------------------------------------------------------------- mgr (optional)
if [[ "$WITH_MGR" == 1 ]]; then
  mkdir -p "$DIR/mgr.x"
  C auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
    -o "$DIR/mgr.x/keyring"
  ceph-mgr -c "$CONF" -i x
  log "mgr.x started"
fi

# ---------------------------------------------------------------- osd
start_osd() {
  local store=$1
  local uuid key id dump
  uuid=$(cat /proc/sys/kernel/random/uuid)
  key=$(ceph-authtool --gen-print-key)
  printf '{"cephx_secret": "%s"}\n' "$key" >"$DIR/osd-new.json"
  id=$(C osd new "$uuid" -i "$DIR/osd-new.json")
  rm -f "$DIR/osd-new.json"
  mkdir -p "$DIR/osd.$id"
  ceph-authtool --create-keyring "$DIR/osd.$id/keyring" --name "osd.$id" --add-key "$key" >/dev/null
  ceph-osd -c "$CONF" -i "$id" --osd-objectstore "$store" --mkfs --osd-uuid "$uuid" \
    >"$DIR/log/osd.$id.mkfs.log" 2>&1 || return 1
  ceph-osd -c "$CONF" -i "$id" --osd-objectstore "$store" || return 1
  OSD_ID=$id
  # wait until the osd is up
  local i
  for i in $(seq 1 120); do
    dump=$(C osd dump 2>/dev/null || true)
    if grep -q "^osd\.$id up" <<<"$dump"; then return 0; fi
    if [[ -f "$DIR/run/osd.$id.pid" ]] &&
       ! grep -qv '^[0-9]* ([^)]*) [ZX]' "/proc/$(cat "$DIR/run/osd.$id.pid")/stat" 2>/dev/null; then
      return 1  # osd process died
    fi
    sleep 0.5
  done
  return 1
}

log "creating osd ($OBJECTSTORE)"
if ! start_osd "$OBJECTSTORE"; then
  [[ "$OBJECTSTORE" == memstore ]] || die "osd failed to start (see $DIR/log)"
  log "memstore osd failed, falling back to bluestore on a sparse file"
  if [[ -n "${OSD_ID:-}" && -f "$DIR/run/osd.$OSD_ID.pid" ]]; then
    kill "$(cat "$DIR/run/osd.$OSD_ID.pid")" 2>/dev/null || true
  fi
  # (`osd purge` would wait for a mgr; remove the never-booted osd by hand)
  Cq osd crush rm "osd.${OSD_ID:-0}" || true
  Cq osd rm "${OSD_ID:-0}" || true
  Cq auth del "osd.${OSD_ID:-0}" || true
  rm -rf "$DIR"/osd.*
  OBJECTSTORE=bluestore
  sed -i "s/^osd objectstore = .*/osd objectstore = bluestore/" "$CONF"
  start_osd bluestore || die "bluestore osd failed too (see $DIR/log)"
fi
log "osd.$OSD_ID up ($OBJECTSTORE)"

# ---------------------------------------------------------------- pool
Cq osd pool create "$POOL" "$PG_NUM" "$PG_NUM" replicated
Cq osd pool set "$POOL" size 1 --yes-i-really-mean-it
Cq osd pool set "$POOL" min_size 1
timeout 60 rbd -c "$CONF" pool init "$POOL"
echo ready >"$DIR/run/probe.in"
for i in $(seq 1 120); do
  if timeout 10 rados -c "$CONF" -p "$POOL" put ceph-up-probe "$DIR/run/probe.in" 2>/dev/null &&
     timeout 10 rados -c "$CONF" -p "$POOL" get ceph-up-probe "$DIR/run/probe.out" 2>/dev/null &&
     cmp -s "$DIR/run/probe.in" "$DIR/run/probe.out"; then
    break
  fi
  [[ $i == 120 ]] && die "pool $POOL never became usable"
  sleep 0.5
done
timeout 10 rados -c "$CONF" -p "$POOL" rm ceph-up-probe 2>/dev/null || true
log "pool $POOL usable"

if [[ "$WITH_MGR" == 1 ]]; then
  for i in $(seq 1 240); do
    st=$(C mgr stat 2>/dev/null || true)
    if grep -q '"available": true' <<<"$st"; then break; fi
    [[ $i == 240 ]] && die "mgr never became available (see $DIR/log/mgr.x.log)"
    sleep 0.25
  done
  log "mgr.x active"
fi

ENV_LINES=(
  "CEPH_DIR=$DIR"
  "CEPH_CONF=$CONF"
  "CEPH_KEYRING=$KEYRING"
  "CEPH_POOL=$POOL"
  "CEPH_MON_HOST=$MON_HOST"
  "CEPH_OBJECTSTORE=$OBJECTSTORE"
)

# ---------------------------------------------------------------- rgw (optional)
if [[ "$WITH_RGW" == 1 ]]; then
  command -v radosgw >/dev/null || die "missing radosgw (apt-get install radosgw)"
  mkdir -p "$DIR/rgw.a"
  C auth get-or-create client.rgw.a mon 'allow rw' osd 'allow rwx' -o "$DIR/rgw.a/keyring"
  radosgw -c "$CONF" -n client.rgw.a
  RGW_OK=0
  for i in $(seq 1 240); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$RGW_PORT") 2>/dev/null; then RGW_OK=1; break; fi
    sleep 0.25
  done
  [[ $RGW_OK == 1 ]] || die "radosgw did not answer on 127.0.0.1:$RGW_PORT (see $DIR/log/client.rgw.a.log)"
  AK=$(od -An -N10 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)
  SK=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
  timeout 120 radosgw-admin -c "$CONF" user create --uid=test --display-name="test user" \
    --access-key="$AK" --secret-key="$SK" >"$DIR/rgw.a/user.json"
  ENV_LINES+=(
    "CEPH_RGW_ENDPOINT=http://127.0.0.1:$RGW_PORT"
    "CEPH_S3_ACCESS_KEY=$AK"
    "CEPH_S3_SECRET_KEY=$SK"
  )
  log "radosgw up on 127.0.0.1:$RGW_PORT"
fi

OK=1
printf '%s\n' "${ENV_LINES[@]}" >"$DIR/env"
printf '%s\n' "${ENV_LINES[@]}"
T1=$(date +%s.%N)
awk -v a="$T0" -v b="$T1" 'BEGIN{printf "CEPH_READY elapsed=%.1fs\n", b-a}'
