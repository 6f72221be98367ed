//go:build ceph

package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/backendtest"
	"github.com/lunway/lunway/backend/s3"
	"github.com/lunway/lunway/internal/testenv"
)

// radosgw returns options for a fresh bucket on the test cluster's
// radosgw; the test's objects are deleted when it ends.
func radosgw(t *testing.T) *s3.Options {
	t.Helper()
	env := testenv.Ceph(t)
	ep := env["CEPH_RGW_ENDPOINT"]
	if ep == "" {
		testenv.Unavailable(t, "the Ceph cluster has no radosgw (start it with CEPH_WITH_RGW=1)")
	}
	o := &s3.Options{
		Endpoint:     ep,
		Bucket:       fmt.Sprintf("lunway-s3test-%x", rand.Uint64()),
		PathStyle:    true,
		AccessKey:    env["CEPH_S3_ACCESS_KEY"],
		SecretKey:    env["CEPH_S3_SECRET_KEY"],
		CreateBucket: true,
	}
	janitor, err := s3.Open(t.Context(), o)
	if err != nil {
		t.Fatalf("radosgw at %s: %v", ep, err)
	}
	t.Cleanup(func() {
		defer janitor.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var names []string
		janitor.List(ctx, "", func(oi backend.ObjectInfo) error { names = append(names, oi.Name); return nil })
		for _, n := range names {
			if err := janitor.Delete(ctx, n); err != nil {
				t.Logf("cleanup: %v", err)
			}
		}
	})
	return o
}

// TestS3Conformance runs the backend suite against radosgw, each store
// under its own prefix of one bucket.
func TestS3Conformance(t *testing.T) {
	base := radosgw(t)
	n := 0
	backendtest.Run(t, func(t *testing.T) backend.Store {
		n++
		o := *base
		o.CreateBucket = false
		// Short: radosgw maps a key to a RADOS object named after the
		// bucket marker and the key, and the test cluster limits RADOS
		// names to 256 bytes; the suite uses 200-byte names.
		o.Prefix = fmt.Sprintf("c%d", n)
		s, err := s3.Open(t.Context(), &o)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestS3Radosgw checks what radosgw does differently from the in-memory
// service: multipart uploads, bad credentials, a missing bucket.
func TestS3Radosgw(t *testing.T) {
	o := radosgw(t)
	o.PartSize = s3.MinPartSize
	s, err := s3.Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	data := make([]byte, 2*s3.MinPartSize+777)
	for i := range data {
		data[i] = byte(i*31 + i>>11)
	}
	if err := s.Put(ctx, "big/obj", data); err != nil {
		t.Fatalf("multipart Put: %v", err)
	}
	p := make([]byte, 3<<20)
	off := int64(s3.MinPartSize - 1000) // straddles a part boundary
	if n, err := s.ReadAt(ctx, "big/obj", p, off); err != nil || n != len(p) || !bytes.Equal(p, data[off:off+int64(len(p))]) {
		t.Fatalf("ReadAt across parts = %d, %v", n, err)
	}
	if info, err := s.Stat(ctx, "big/obj"); err != nil || info.Size != int64(len(data)) {
		t.Fatalf("Stat = %+v, %v", info, err)
	}
	if st := s.Stats(); st.MultipartUploads != 1 {
		t.Errorf("MultipartUploads = %d", st.MultipartUploads)
	}

	bad := *o
	bad.SecretKey = "wrong"
	bad.CreateBucket = false
	if _, err := s3.Open(ctx, &bad); !errors.Is(err, s3.ErrAccessDenied) {
		t.Errorf("Open with a wrong secret = %v; want ErrAccessDenied", err)
	}
	missing := *o
	missing.Bucket += "-missing"
	missing.CreateBucket = false
	if _, err := s3.Open(ctx, &missing); !errors.Is(err, s3.ErrNoSuchBucket) {
		t.Errorf("Open of a missing bucket = %v; want ErrNoSuchBucket", err)
	}
}
