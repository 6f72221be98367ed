//go:build !ceph

package rbd_test

import "testing"

// TestCephNeedsTag reports that the cluster tests were not built.
func TestCephNeedsTag(t *testing.T) {
	t.Skip("built without -tags ceph,pacific; `make test` runs these against a real cluster")
}
