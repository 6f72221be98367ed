# The two commands of the README.
.PHONY: run test build bench

# Build the daemon and serve the embedded default: one 1 GiB thin file-backed LUN 0 of
# target iqn.2026-11.dev.lunway:default on 127.0.0.1:3260, data under ./lunway-data.
run: build
	./lunway serve

build:
	go build -o lunway ./cmd/lunway

# Every test: installs what it needs (Debian packages, Go modules), then unit, protocol,
# conformance (libiscsi iscsi-test-cu), QEMU, fuzz and Ceph tests.
test:
	bash deploy/dev/test.sh

# Every benchmark, side by side on this machine (Lunway vs tgt, blockmap vs file, the
# I/O paths, and bench/image, bench/ceph, bench/s3 when present), then their tables
# and charts written into docs/PERFORMANCE.md. Takes about an hour; see bench/run-all.sh.
bench:
	bash bench/run-all.sh
