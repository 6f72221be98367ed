package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/backendtest"
	"github.com/lunway/lunway/backend/s3"
	"github.com/lunway/lunway/backend/s3/s3test"
	"github.com/lunway/lunway/blockdev"
)

// fastOptions retry quickly so that failure tests take milliseconds.
func fastOptions(srv *s3test.Server, bucket string) *s3.Options {
	return &s3.Options{
		Endpoint:       srv.URL(),
		Bucket:         bucket,
		PathStyle:      true,
		AccessKey:      "AKIDTEST",
		SecretKey:      "secret",
		MaxAttempts:    4,
		RetryBaseDelay: time.Millisecond,
		RetryMaxDelay:  5 * time.Millisecond,
		AttemptTimeout: 15 * time.Second, // 5 MiB parts under -race on a busy machine
		DialTimeout:    time.Second,
	}
}

func open(t *testing.T, o *s3.Options) *s3.Store {
	t.Helper()
	s, err := s3.Open(t.Context(), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newServer(t *testing.T, buckets ...string) *s3test.Server {
	t.Helper()
	srv := s3test.New(buckets...)
	t.Cleanup(srv.Close)
	return srv
}

// TestConformance runs the backend suite against the in-memory S3
// service, with a prefix, and with tiny list pages so that pagination is
// exercised; the radosgw run is TestS3Conformance (ceph tag).
func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name, prefix string
		page         int
	}{{"plain", "", 1000}, {"prefix-paged", "vols/a", 3}} {
		if raceEnabled && tc.name == "plain" {
			continue // prefix-paged covers it; -race is slow on the SDK
		}
		t.Run(tc.name, func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T) backend.Store {
				srv := newServer(t, "b")
				srv.SetPageSize(tc.page)
				o := fastOptions(srv, "b")
				o.Prefix = tc.prefix
				s, err := s3.Open(t.Context(), o)
				if err != nil {
					t.Fatal(err)
				}
				return s
			})
		})
	}
}

func TestPrefixAndForeignKeys(t *testing.T) {
	srv := newServer(t, "b")
	o := fastOptions(srv, "b")
	o.Prefix = "p/q/"
	s := open(t, o)
	ctx := t.Context()
	if err := s.Put(ctx, "a/b", []byte("x")); err != nil {
		t.Fatal(err)
	}
	// A key under the prefix that is not a valid object name, and one
	// outside the prefix.
	other := open(t, fastOptions(srv, "b"))
	for _, k := range []string{"p/q/bad~name", "elsewhere"} {
		if err := other.Put(ctx, strings.ReplaceAll(k, "~", "_"), []byte("y")); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := srv.Keys("b"), []string{"elsewhere", "p/q/a/b", "p/q/bad_name"}; !slices.Equal(got, want) {
		t.Fatalf("bucket keys %q, want %q", got, want)
	}
	var names []string
	if err := s.List(ctx, "", func(oi backend.ObjectInfo) error { names = append(names, oi.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a/b", "bad_name"}; !slices.Equal(names, want) {
		t.Fatalf("List = %q, want %q", names, want)
	}
}

// TestErrorMapping: what the service answers, after retries, becomes
// which backend error.
func TestErrorMapping(t *testing.T) {
	tests := []struct {
		status   int
		code     string
		times    int
		wantErr  error // nil: succeeds after the retries
		wantReqs int   // requests the operation makes
	}{
		{503, "SlowDown", 2, nil, 3},
		{500, "InternalError", 3, nil, 4},
		{503, "ServiceUnavailable", 4, backend.ErrUnavailable, 4},
		{502, "BadGateway", 9, backend.ErrUnavailable, 4},
		{429, "TooManyRequests", 9, backend.ErrUnavailable, 4},
		{507, "InsufficientStorage", 1, backend.ErrNoSpace, 1},
		{403, "QuotaExceeded", 1, backend.ErrNoSpace, 1},
		{403, "AccessDenied", 1, s3.ErrAccessDenied, 1},
		{403, "SignatureDoesNotMatch", 1, s3.ErrAccessDenied, 1},
		{404, "NoSuchBucket", 1, s3.ErrNoSuchBucket, 1},
		{400, "RequestTimeout", 1, nil, 2},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d-%s-x%d", tt.status, tt.code, tt.times), func(t *testing.T) {
			srv := newServer(t, "b")
			s := open(t, fastOptions(srv, "b"))
			srv.Fail(tt.times, tt.status, tt.code)
			before := srv.Requests()
			err := s.Put(t.Context(), "obj", []byte("data"))
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Put = %v; want %v", err, tt.wantErr)
			}
			if got := srv.Requests() - before; got != tt.wantReqs {
				t.Errorf("%d requests, want %d", got, tt.wantReqs)
			}
			wantHealth := blockdev.Healthy
			if errors.Is(tt.wantErr, backend.ErrUnavailable) {
				wantHealth = blockdev.Unavailable
			}
			if h := s.Health(); h != wantHealth {
				t.Errorf("Health = %v, want %v", h, wantHealth)
			}
			if errors.Is(err, backend.ErrNotFound) {
				t.Errorf("error %v also wraps ErrNotFound", err)
			}
		})
	}
}

func TestNotFound(t *testing.T) {
	srv := newServer(t, "b")
	s := open(t, fastOptions(srv, "b"))
	ctx := t.Context()
	if _, err := s.ReadAt(ctx, "nope", make([]byte, 10), 0); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("ReadAt = %v", err)
	}
	if _, err := s.ReadAt(ctx, "nope", nil, 0); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("ReadAt(empty buffer) = %v", err)
	}
	if _, err := s.Stat(ctx, "nope"); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Stat = %v", err)
	}
	if err := s.Delete(ctx, "nope"); err != nil {
		t.Errorf("Delete = %v", err)
	}
	if h := s.Health(); h != blockdev.Healthy {
		t.Errorf("Health after NoSuchKey = %v; the service answered", h)
	}
}

func TestOpenBucket(t *testing.T) {
	srv := newServer(t)
	o := fastOptions(srv, "missing")
	if _, err := s3.Open(t.Context(), o); !errors.Is(err, s3.ErrNoSuchBucket) {
		t.Fatalf("Open of a missing bucket = %v; want ErrNoSuchBucket", err)
	}
	o.CreateBucket = true
	s := open(t, o)
	if err := s.Put(t.Context(), "x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	// Opening again with CreateBucket finds it.
	open(t, o)
	if _, ok := srv.Object("missing", "x"); !ok {
		t.Fatal("object not in the created bucket")
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []s3.Options{
		{},
		{Bucket: "b", Endpoint: "ftp://x"},
		{Bucket: "b", Endpoint: "http://"},
		{Bucket: "b", Prefix: "/abs"},
		{Bucket: "b", AccessKey: "a"},
		{Bucket: "b", PartSize: 1 << 20},
		{Bucket: "b", MaxAttempts: -1},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", o)
		}
	}
	ok := s3.Options{Bucket: "b", Endpoint: "https://s3.example:9000", Prefix: "a/b/"}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v", ok, err)
	}
}

// TestUnreachable: a service that refuses connections or hangs gives
// ErrUnavailable within the retries or the context, and Health follows.
func TestUnreachable(t *testing.T) {
	srv := newServer(t, "b")
	s := open(t, fastOptions(srv, "b"))
	ctx := t.Context()
	if err := s.Put(ctx, "obj", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []s3test.Mode{s3test.DownRefuse, s3test.Down503, s3test.DownHang} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			srv.SetDown(mode)
			rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			start := time.Now()
			_, err := s.ReadAt(rctx, "obj", make([]byte, 2), 0)
			if !errors.Is(err, backend.ErrUnavailable) {
				t.Fatalf("ReadAt while down = %v; want ErrUnavailable", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("ReadAt while down took %v", d)
			}
			if s.Health() != blockdev.Unavailable {
				t.Fatalf("Health while down = %v", s.Health())
			}
			srv.SetDown(s3test.Up)
			p := make([]byte, 2)
			if _, err := s.ReadAt(ctx, "obj", p, 0); err != nil || string(p) != "v1" {
				t.Fatalf("ReadAt after recovery = %q, %v", p, err)
			}
			if s.Health() != blockdev.Healthy {
				t.Fatalf("Health after recovery = %v", s.Health())
			}
		})
	}
}

// TestCutBody: a GET whose body breaks is continued from where it broke,
// pinned to the same version.
func TestCutBody(t *testing.T) {
	srv := newServer(t, "b")
	s := open(t, fastOptions(srv, "b"))
	ctx := t.Context()
	data := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	if err := s.Put(ctx, "obj", data); err != nil {
		t.Fatal(err)
	}
	srv.CutBodies(2)
	p := make([]byte, len(data)-100)
	n, err := s.ReadAt(ctx, "obj", p, 50)
	if err != nil || n != len(p) || !bytes.Equal(p, data[50:len(data)-50]) {
		t.Fatalf("ReadAt with cut bodies = %d, %v (equal: %v)", n, err, bytes.Equal(p, data[50:len(data)-50]))
	}
	// Past the end: io.EOF with what there is.
	srv.CutBodies(1)
	p = make([]byte, 1000)
	n, err = s.ReadAt(ctx, "obj", p, int64(len(data)-10))
	if n != 10 || err != io.EOF || !bytes.Equal(p[:10], data[len(data)-10:]) {
		t.Fatalf("ReadAt at the end = %d, %v", n, err)
	}
}

// TestMultipart uploads objects larger than the part size in parts, and
// aborts an upload whose part fails for good.
func TestMultipart(t *testing.T) {
	srv := newServer(t, "b")
	o := fastOptions(srv, "b")
	o.PartSize = s3.MinPartSize
	s := open(t, o)
	ctx := t.Context()
	data := make([]byte, 2*s3.MinPartSize+12345)
	for i := range data {
		data[i] = byte(i * 7 / 3)
	}
	if err := s.Put(ctx, "big", data); err != nil {
		t.Fatal(err)
	}
	got, ok := srv.Object("b", "big")
	if !ok || !bytes.Equal(got, data) {
		t.Fatalf("multipart object differs (present %v, %d bytes)", ok, len(got))
	}
	if st := s.Stats(); st.MultipartUploads != 1 {
		t.Fatalf("Stats.MultipartUploads = %d", st.MultipartUploads)
	}
	// Every part fails: the upload is aborted and leaves nothing.
	srv.FailParts(1000, 500, "InternalError")
	err := s.Put(ctx, "big2", data)
	if !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("Put with failing parts = %v", err)
	}
	srv.ClearFailures()
	if _, ok := srv.Object("b", "big2"); ok {
		t.Fatal("a failed multipart upload left an object")
	}
	if n := srv.PendingUploads(); n != 0 {
		t.Fatalf("%d multipart uploads left pending after a failure", n)
	}
	// A done context aborts the upload and leaves nothing.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Put(cctx, "big3", data); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context = %v", err)
	}
	if _, ok := srv.Object("b", "big3"); ok {
		t.Fatal("cancelled multipart upload left an object")
	}
	if n := srv.PendingUploads(); n != 0 {
		t.Fatalf("%d multipart uploads left pending after a cancellation", n)
	}
}

// TestCloseCancelsCalls: Close returns while a call hangs on the service,
// and the call fails with ErrClosed.
func TestCloseCancelsCalls(t *testing.T) {
	srv := newServer(t, "b")
	o := fastOptions(srv, "b")
	o.AttemptTimeout = time.Minute
	s, err := s3.Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetDown(s3test.DownHang)
	errc := make(chan error, 1)
	go func() {
		_, err := s.Stat(context.Background(), "x")
		errc <- err
	}()
	for srv.Requests() < 2 {
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("hung call after Close = %v; want ErrClosed", err)
	}
	srv.SetDown(s3test.Up)
}

// TestOpenUnreachable: with OpenUnreachable, Open succeeds while the
// service is down and CheckBucket reports it; later the bucket is found.
func TestOpenUnreachable(t *testing.T) {
	srv := newServer(t, "b")
	srv.SetDown(s3test.DownRefuse)
	o := fastOptions(srv, "b")
	if _, err := s3.Open(t.Context(), o); !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("Open while down = %v; want ErrUnavailable", err)
	}
	o.OpenUnreachable = true
	s := open(t, o)
	if err := s.CheckBucket(t.Context()); !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("CheckBucket while down = %v", err)
	}
	srv.SetDown(s3test.Up)
	if err := s.CheckBucket(t.Context()); err != nil {
		t.Fatalf("CheckBucket after recovery = %v", err)
	}
	if s.Health() != blockdev.Healthy {
		t.Fatalf("Health = %v", s.Health())
	}
}
