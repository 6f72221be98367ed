//go:build !ceph

package main

import "testing"

// TestS3NeedsTag reports that the S3 (radosgw) end-to-end tests were not
// built: they need the ceph build tag and a cluster with radosgw.
func TestS3NeedsTag(t *testing.T) {
	t.Skip("built without -tags ceph,pacific; `make test` runs the S3 tests against radosgw")
}
