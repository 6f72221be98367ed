# The two commands of the README.
.PHONY: run test build

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
