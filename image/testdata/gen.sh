#!/bin/sh
# Regenerates the seed images of the image fuzzers and hostile-input tests:
# small images made by qemu-img (qemu-utils), stored gzip-compressed.
# Run from this directory: sh gen.sh
set -eu
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
# 1 MiB of sparse data: a few patterned runs, the rest holes.
qemu-img create -q -f raw "$t/src.raw" 1M
qemu-io -f raw -c "write -P 0x11 0 4k" -c "write -P 0x22 68k 8k" \
	-c "write -P 0x33 700k 3k" -c "write -P 0x44 1020k 4k" "$t/src.raw" >/dev/null
conv() { # name format options
	qemu-img convert -q -f raw -O "$2" ${3:+-o "$3"} "$t/src.raw" "$t/$1"
	gzip -9n -c "$t/$1" >"$1.gz"
}
conv qcow2-v2.qcow2 qcow2 compat=0.10,cluster_size=4096
conv qcow2-v3.qcow2 qcow2 compat=1.1,cluster_size=4096
conv qcow2-extl2.qcow2 qcow2 compat=1.1,extended_l2=on,cluster_size=16k
qemu-img convert -q -c -f raw -O qcow2 -o compat=1.1,cluster_size=4096 "$t/src.raw" "$t/qcow2-compressed.qcow2"
gzip -9n -c "$t/qcow2-compressed.qcow2" >qcow2-compressed.qcow2.gz
# An overlay with a backing file, a zero cluster and a header extension.
qemu-img create -q -f qcow2 -o compat=1.1,cluster_size=4096 -F raw -b src.raw "$t/overlay.qcow2"
qemu-io -f qcow2 -c "write -z 0 4k" -c "write -P 0x55 8k 4k" "$t/overlay.qcow2" >/dev/null
gzip -9n -c "$t/overlay.qcow2" >qcow2-overlay.qcow2.gz
conv vmdk-sparse.vmdk vmdk subformat=monolithicSparse
conv vmdk-stream.vmdk vmdk subformat=streamOptimized
qemu-img convert -q -f raw -O vmdk -o subformat=monolithicFlat "$t/src.raw" "$t/vmdk-flat.vmdk"
cp "$t/vmdk-flat.vmdk" vmdk-flat-descriptor.vmdk
conv vhd-dynamic.vhd vpc subformat=dynamic,force_size=on
conv vhd-fixed.vhd vpc subformat=fixed,force_size=on
conv vhdx-dynamic.vhdx vhdx subformat=dynamic,block_size=1M
