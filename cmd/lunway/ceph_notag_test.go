//go:build !ceph

package main

import "testing"

// TestCephNeedsTag reports that the Ceph end-to-end tests were not built.
func TestCephNeedsTag(t *testing.T) {
	t.Skip("built without -tags ceph,pacific; `make test` runs these against a real cluster")
}
