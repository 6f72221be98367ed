#!/usr/bin/env bash
# build.sh - build the guest of the stacked I/O paths (bench/paths) into a cache
# directory, never into the repository: a Debian kernel and an initramfs holding
# busybox, the kernel modules for virtio disks, virtio networking and ext4, and
# qemu-nbd with its shared libraries.
#
# The guest plays the hypervisor host of a classic datastore: its ext4 stands for
# VMFS, its virtio disk (attached by QEMU through libiscsi) for the host's iSCSI
# path to the LUN, and qemu-nbd inside it for the hypervisor's VMDK/qcow2 driver.
#
# Usage: bench/paths/guest/build.sh [CACHE_DIR]
#   CACHE_DIR defaults to $LUNWAY_BENCH_CACHE/guest or ~/.cache/lunway-bench/guest.
# Prints the cache directory. Needs: apt-get (download only), dpkg-deb, objcopy,
# gzip, busybox-static (its cpio writes the archive) and qemu-utils installed on the host.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-${LUNWAY_BENCH_CACHE:-$HOME/.cache/lunway-bench}/guest}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
stamp="$OUT/.built-$(sha256sum "$HERE/build.sh" "$HERE/init" | sha256sum | cut -c1-16)"
if [[ -f "$stamp" && -f "$OUT/vmlinuz" && -f "$OUT/initrd.img" ]]; then
  echo "$OUT"; exit 0
fi
for c in dpkg-deb objcopy gzip qemu-nbd; do
  command -v "$c" >/dev/null || { echo "build.sh: $c missing" >&2; exit 1; }
done
BUSYBOX=/bin/busybox
if [[ ! -x "$BUSYBOX" ]] || ldd "$BUSYBOX" >/dev/null 2>&1; then
  echo "build.sh: a static /bin/busybox is needed (apt-get install busybox-static)" >&2; exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(
  cd "$work"
  # The kernel package that linux-image-amd64 points at.
  apt-get download linux-image-amd64 >/dev/null 2>&1
  meta=$(ls linux-image-amd64_*.deb)
  kpkg=$(dpkg-deb -f "$meta" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[0-9][^ ]*\).*/\1/p' | head -1)
  apt-get download "$kpkg" >/dev/null 2>&1
  dpkg-deb -x "$(ls "$kpkg"_*.deb)" k
) 2> >(grep -v '^W: Download is performed unsandboxed' >&2)
kver=$(ls "$work/k/lib/modules")
moddir="$work/k/lib/modules/$kver/kernel"
cp "$work/k/boot/vmlinuz-$kver" "$OUT/vmlinuz.tmp"

root="$work/root"
mkdir -p "$root"/{bin,sbin,dev,proc,sys,mnt,tmp,lib/modules,etc}
cp "$BUSYBOX" "$root/bin/busybox"
cp "$HERE/init" "$root/init"
chmod 755 "$root/init"

# Modules in load order: the closure of what we need, dependencies first.
declare -A seen=()
order=()
modpath() { find "$moddir" -name "$1.ko" -print -quit; }
add_mod() {
  local name=$1 path dep
  [[ -n "${seen[$name]:-}" ]] && return
  seen[$name]=1
  path=$(modpath "$name")
  [[ -n "$path" ]] || { echo "build.sh: module $name not found" >&2; exit 1; }
  for dep in $(objcopy -O binary --only-section=.modinfo "$path" /dev/stdout | tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' ' '); do
    add_mod "$dep"
  done
  cp "$path" "$root/lib/modules/$name.ko"
  order+=("$name")
}
for m in virtio virtio_ring virtio_pci virtio_blk virtio_net crc32c_generic libcrc32c ext4; do add_mod "$m"; done
printf '%s\n' "${order[@]}" >"$root/lib/modules/order"

# qemu-nbd and every shared library it loads, at the same paths.
copy_with_libs() {
  local bin=$1 lib
  mkdir -p "$root$(dirname "$bin")"
  cp -L "$bin" "$root$bin"
  for lib in $(ldd "$bin" | awk '/=>/ {print $3} /^\s*\/.*ld-linux/ {print $1}'); do
    [[ -f "$lib" ]] || continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}
copy_with_libs "$(command -v qemu-nbd)"
# ld.so needs /lib64 for the interpreter on amd64.
if [[ -e /lib64/ld-linux-x86-64.so.2 && ! -e "$root/lib64/ld-linux-x86-64.so.2" ]]; then
  mkdir -p "$root/lib64"; cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
fi

(cd "$root" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -1) >"$OUT/initrd.img.tmp"
mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
mv "$OUT/initrd.img.tmp" "$OUT/initrd.img"
echo "$kver" >"$OUT/kernel-version"
rm -f "$OUT"/.built-*
touch "$stamp"
echo "$OUT"
