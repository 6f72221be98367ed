//go:build !ceph

package s3_test

import "testing"

// TestS3NeedsTag stands for the radosgw tests (ceph_test.go), which need
// the ceph build tag and a cluster: `make test` runs them.
func TestS3NeedsTag(t *testing.T) {
	t.Skip("radosgw tests need -tags ceph and a cluster (LUNWAY_CEPH_ENV); `make test` runs them")
}
