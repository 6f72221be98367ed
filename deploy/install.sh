#!/usr/bin/env bash
# install.sh - install Lunway as a hardened systemd service.
#
#   deploy/install.sh [--binary PATH] [--example NAME] [--enable]
#
# It installs the lunway binary to /usr/local/bin (building it from this
# checkout with `go build` unless --binary names one), creates the system
# user `lunway`, creates /etc/lunway and /var/lib/lunway (owner lunway,
# mode 0750), puts an example configuration in /etc/lunway/lunway.yaml
# unless one exists (--example file|blockmap-dir|rbd|rados|s3, default
# file), installs deploy/systemd/lunway.service and reloads systemd. With
# --enable it also enables and starts the service. It never overwrites a
# configuration, and running it again upgrades the binary and the unit.
#
# Packaging and tests: DESTDIR=/some/root installs under that root and
# skips the user, ownership and systemctl steps.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
example="file"
enable=0
while (($#)); do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --example) example="$2"; shift 2 ;;
    --enable) enable=1; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ ! -f "deploy/examples/$example.yaml" ]]; then
  echo "install.sh: no example $example (file, blockmap-dir, rbd, rados, s3)" >&2
  exit 2
fi

root="${DESTDIR:-}"
if [[ -z "$root" && $(id -u) != 0 ]]; then
  echo "install.sh: run as root (or set DESTDIR to stage the files)" >&2
  exit 1
fi
say() { echo "install.sh: $*" >&2; }

# The binary.
if [[ -z "$binary" ]]; then
  command -v go >/dev/null || { echo "install.sh: go not found; pass --binary PATH" >&2; exit 1; }
  binary=$(mktemp -d)/lunway
  say "building lunway"
  go build -trimpath -o "$binary" ./cmd/lunway
fi
install -D -m 0755 "$binary" "$root/usr/local/bin/lunway"
say "installed $root/usr/local/bin/lunway"

# The user and the directories.
if [[ -z "$root" ]]; then
  if ! getent passwd lunway >/dev/null; then
    useradd --system --home-dir /var/lib/lunway --no-create-home --shell /usr/sbin/nologin \
      --comment "Lunway iSCSI target" lunway
    say "created system user lunway"
  fi
  own=(-o lunway -g lunway)
else
  own=()
fi
install -d -m 0750 "${own[@]}" "$root/etc/lunway" "$root/var/lib/lunway"

# The configuration: never overwritten.
if [[ -e "$root/etc/lunway/lunway.yaml" ]]; then
  say "keeping the existing $root/etc/lunway/lunway.yaml"
else
  install -m 0600 "${own[@]}" "deploy/examples/$example.yaml" "$root/etc/lunway/lunway.yaml"
  say "installed the $example example as $root/etc/lunway/lunway.yaml: edit it before starting"
fi

# The unit.
install -D -m 0644 deploy/systemd/lunway.service "$root/etc/systemd/system/lunway.service"
install -D -m 0644 deploy/systemd/lunway-rawdev.conf "$root/usr/local/share/lunway/lunway-rawdev.conf"
say "installed $root/etc/systemd/system/lunway.service"
if [[ -z "$root" ]] && command -v systemctl >/dev/null; then
  systemctl daemon-reload
  if ((enable)); then
    systemctl enable --now lunway.service
    say "lunway.service enabled and started; see: systemctl status lunway; lunway status --data-dir /var/lib/lunway"
  else
    say "start it with: systemctl enable --now lunway"
  fi
fi
