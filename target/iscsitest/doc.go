// Package iscsitest starts an iSCSI Server for tests: a target backed by
// in-memory LUNs (blockdev/mem) listening on 127.0.0.1:0, stopped in
// t.Cleanup.
package iscsitest
