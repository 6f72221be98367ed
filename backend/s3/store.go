package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/blockdev"
)

// Store is a backend.Store in an S3 bucket. All methods may be called
// concurrently.
type Store struct {
	c      *s3.Client
	opts   Options
	bucket string
	prefix string // before every key: "" or ends with '/'
	sem    chan struct{}
	idle   interface{ CloseIdleConnections() }
	log    *slog.Logger

	// closeCtx is cancelled by Close, which then waits for calls (wg).
	closeCtx    context.Context
	closeCancel context.CancelFunc
	wg          sync.WaitGroup

	health atomic.Uint32 // blockdev.Health
	stats  counters

	mu struct {
		sync.Mutex
		closed bool
	}
}

var _ backend.Store = (*Store)(nil)

// counters are the Store's statistics.
type counters struct {
	requests, retries, failures  atomic.Int64
	readBytes, writeBytes        atomic.Int64
	gets, puts, deletes, lists   atomic.Int64
	heads, multipartUploads      atomic.Int64
	unavailableSince             atomic.Int64 // unix nanos; 0 when healthy
	lastTransitionUnixNano       atomic.Int64
	consecutiveTransientFailures atomic.Int64
}

// Stats is a snapshot of a Store's counters.
type Stats struct {
	Requests, Retries, Failures int64 // HTTP attempts, retried attempts, operations failed after retries
	ReadBytes, WriteBytes       int64
	Gets, Puts, Deletes, Lists  int64 // operations (not attempts)
	Heads, MultipartUploads     int64
	Health                      blockdev.Health
}

// Open connects to the bucket: it loads credentials, checks that the
// bucket answers (creating it when Options.CreateBucket is set) and
// returns the Store. An unreachable service gives an error wrapping
// backend.ErrUnavailable.
func Open(ctx context.Context, opts *Options) (*Store, error) {
	o := opts.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	bc := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConns = o.MaxConcurrency * 2
		tr.MaxIdleConnsPerHost = o.MaxConcurrency * 2
		tr.IdleConnTimeout = 30 * time.Second
		tr.ResponseHeaderTimeout = o.AttemptTimeout
	}).WithDialerOptions(func(d *net.Dialer) {
		d.Timeout = o.DialTimeout
	})
	return open(ctx, o, bc)
}

func open(ctx context.Context, o Options, hc *awshttp.BuildableClient) (*Store, error) {
	load := []func(*config.LoadOptions) error{
		config.WithRegion(o.Region),
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
		// Retries are ours (bounded concurrency, backoff within ctx).
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
		config.WithHTTPClient(hc),
	}
	switch {
	case o.AccessKey != "":
		load = append(load, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(o.AccessKey, o.SecretKey, o.SessionToken)))
	default:
		if o.CredentialsFile != "" {
			load = append(load, config.WithSharedCredentialsFiles([]string{o.CredentialsFile}))
		}
		if o.Profile != "" {
			load = append(load, config.WithSharedConfigProfile(o.Profile))
		}
	}
	if o.Endpoint != "" {
		// Not AWS: never wait for the EC2 metadata service.
		load = append(load, config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("s3: loading configuration: %w", err)
	}
	// Build the HTTP client now (the SDK may have added a CA bundle to
	// it), so that Close can drop its idle connections.
	var idle interface{ CloseIdleConnections() }
	if b, ok := cfg.HTTPClient.(*awshttp.BuildableClient); ok {
		frozen := b.Freeze()
		cfg.HTTPClient = frozen
		idle, _ = frozen.(interface{ CloseIdleConnections() })
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		so.UsePathStyle = o.PathStyle
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		so.DisableLogOutputChecksumValidationSkipped = true
	})
	s := &Store{
		c:      client,
		opts:   o,
		bucket: o.Bucket,
		prefix: o.keyPrefix(),
		sem:    make(chan struct{}, o.MaxConcurrency),
		idle:   idle,
		log:    o.Logger,
	}
	s.closeCtx, s.closeCancel = context.WithCancel(context.Background())
	if err := s.CheckBucket(ctx); err != nil {
		if o.OpenUnreachable && errors.Is(err, backend.ErrUnavailable) {
			s.log.Warn("s3: service unreachable at open; going on", "bucket", s.bucket, "err", err)
			return s, nil
		}
		s.Close()
		return nil, err
	}
	return s, nil
}

// CheckBucket makes sure the bucket exists (creating it when
// Options.CreateBucket is set) and answers. Open calls it.
func (s *Store) CheckBucket(ctx context.Context) error {
	ctx, done, err := s.begin(ctx, "head-bucket", s.bucket, false)
	if err != nil {
		return err
	}
	defer done()
	return s.checkBucket(ctx)
}

func (s *Store) checkBucket(ctx context.Context) error {
	err := s.do(ctx, "head-bucket", s.bucket, func(ctx context.Context) error {
		_, err := s.c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket})
		return err
	})
	if err == nil || !errors.Is(err, backend.ErrNotFound) && !errors.Is(err, ErrNoSuchBucket) {
		return err
	}
	if !s.opts.CreateBucket {
		return fmt.Errorf("s3: bucket %q: %w", s.bucket, ErrNoSuchBucket)
	}
	err = s.do(ctx, "create-bucket", s.bucket, func(ctx context.Context) error {
		_, err := s.c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &s.bucket})
		var owned *types.BucketAlreadyOwnedByYou
		if errors.As(err, &owned) {
			return nil
		}
		return err
	})
	if err == nil {
		s.log.Info("s3: created bucket", "bucket", s.bucket)
	}
	return err
}

// Health reports whether the service answered the last request.
func (s *Store) Health() blockdev.Health { return blockdev.Health(s.health.Load()) }

// Stats returns a snapshot of the counters.
func (s *Store) Stats() Stats {
	c := &s.stats
	return Stats{
		Requests: c.requests.Load(), Retries: c.retries.Load(), Failures: c.failures.Load(),
		ReadBytes: c.readBytes.Load(), WriteBytes: c.writeBytes.Load(),
		Gets: c.gets.Load(), Puts: c.puts.Load(), Deletes: c.deletes.Load(), Lists: c.lists.Load(),
		Heads: c.heads.Load(), MultipartUploads: c.multipartUploads.Load(),
		Health: s.Health(),
	}
}

func (s *Store) key(name string) string { return s.prefix + name }

// begin admits a call: it fails after Close, and returns a context that
// Close cancels.
func (s *Store) begin(ctx context.Context, op, name string, checkName bool) (context.Context, func(), error) {
	if checkName {
		if err := backend.ValidName(name); err != nil {
			return nil, nil, fmt.Errorf("s3: %s: %w", op, err)
		}
	}
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return nil, nil, fmt.Errorf("s3: %s %q: %w", op, name, backend.ErrClosed)
	}
	s.wg.Add(1)
	s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		s.wg.Done()
		return nil, nil, s.ctxError(op, name, ctx)
	}
	cctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.closeCtx, cancel)
	return cctx, func() {
		stop()
		cancel()
		s.wg.Done()
	}, nil
}

// ctxError reports a call that ends because its context is done (or the
// store closed under it).
func (s *Store) ctxError(op, name string, ctx context.Context) error {
	if s.closeCtx.Err() != nil {
		return fmt.Errorf("s3: %s %q: %w", op, name, backend.ErrClosed)
	}
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("s3: %s %q: %w (%w)", op, name, err, backend.ErrUnavailable)
	}
	return fmt.Errorf("s3: %s %q: %w", op, name, err)
}

// Retry classes do() passes back as themselves (callers interpret them).
var (
	errRange        = errors.New("s3: range not satisfiable")
	errPrecondition = errors.New("s3: precondition failed")
)

// do runs attempt until it succeeds, fails permanently, runs out of
// attempts or ctx is done, with backoff between attempts and at most
// MaxConcurrency attempts in flight store-wide. The error is mapped to
// the backend sentinels (errRange and errPrecondition pass through).
func (s *Store) do(ctx context.Context, op, name string, attempt func(ctx context.Context) error) error {
	var last error
	for i := 0; i < s.opts.MaxAttempts; i++ {
		if i > 0 {
			s.stats.retries.Add(1)
			t := time.NewTimer(s.backoff(i))
			select {
			case <-ctx.Done():
				t.Stop()
				if classify(last) == classTransient {
					s.noteUnavailable(op, name, last)
				}
				return s.ctxError(op, name, ctx)
			case <-t.C:
			}
		}
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			return s.ctxError(op, name, ctx)
		}
		s.stats.requests.Add(1)
		actx, cancel := context.WithTimeout(ctx, s.opts.AttemptTimeout)
		err := attempt(actx)
		cancel()
		<-s.sem
		if err == nil {
			s.noteAnswer()
			return nil
		}
		if ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) && s.closeCtx.Err() == nil {
				// The service did not answer within the caller's time.
				s.noteUnavailable(op, name, err)
			}
			return s.ctxError(op, name, ctx)
		}
		c := classify(err)
		switch c {
		case classTransient:
			last = err
			s.log.Debug("s3: request failed; retrying", "op", op, "object", name, "attempt", i+1, "err", err)
			continue
		case classPrecondition:
			// Only reads pin a version; they start over.
			s.noteAnswer()
			last = errPrecondition
			continue
		case classRange:
			s.noteAnswer()
			return errRange
		}
		s.noteAnswer()
		return opError(op, name, c, err)
	}
	s.stats.failures.Add(1)
	if errors.Is(last, errPrecondition) {
		return fmt.Errorf("s3: %s %q: object replaced during every attempt: %w", op, name, backend.ErrUnavailable)
	}
	s.noteUnavailable(op, name, last)
	return opError(op, name, classTransient, last)
}

// backoff is the delay before attempt i (1-based retry count): exponential,
// capped, with full jitter over its upper half.
func (s *Store) backoff(i int) time.Duration {
	d := s.opts.RetryBaseDelay << min(i-1, 20)
	if d <= 0 || d > s.opts.RetryMaxDelay {
		d = s.opts.RetryMaxDelay
	}
	return d/2 + rand.N(d/2+1)
}

// noteAnswer records that the service answered (even with an error of its
// own, like NoSuchKey): it is reachable.
func (s *Store) noteAnswer() {
	s.stats.consecutiveTransientFailures.Store(0)
	if s.health.Swap(uint32(blockdev.Healthy)) != uint32(blockdev.Healthy) {
		down := time.Duration(time.Now().UnixNano() - s.stats.unavailableSince.Swap(0))
		s.log.Info("s3: service reachable again", "bucket", s.bucket, "unavailable_for", down.Round(time.Millisecond))
	}
}

// noteUnavailable records a request that failed after every retry.
func (s *Store) noteUnavailable(op, name string, err error) {
	s.stats.consecutiveTransientFailures.Add(1)
	if s.health.Swap(uint32(blockdev.Unavailable)) != uint32(blockdev.Unavailable) {
		s.stats.unavailableSince.Store(time.Now().UnixNano())
		s.log.Warn("s3: service unavailable", "bucket", s.bucket, "op", op, "object", name, "err", err)
	}
}

// ReadAt implements backend.Store with ranged GETs.
func (s *Store) ReadAt(ctx context.Context, name string, p []byte, off int64) (int, error) {
	ctx, done, err := s.begin(ctx, "get", name, true)
	if err != nil {
		return 0, err
	}
	defer done()
	if off < 0 {
		return 0, fmt.Errorf("s3: get %q: negative offset %d: %w", name, off, blockdev.ErrOutOfRange)
	}
	s.stats.gets.Add(1)
	if len(p) == 0 {
		_, err := s.stat(ctx, name)
		return 0, err
	}
	key := s.key(name)
	n := 0
	eof := false
	var etag *string // pinned by the first answer
	err = s.do(ctx, "get", name, func(ctx context.Context) error {
		start := off + int64(n)
		in := &s3.GetObjectInput{
			Bucket:  &s.bucket,
			Key:     &key,
			Range:   aws.String("bytes=" + strconv.FormatInt(start, 10) + "-" + strconv.FormatInt(off+int64(len(p))-1, 10)),
			IfMatch: etag,
		}
		out, err := s.c.GetObject(ctx, in)
		if err != nil {
			if classify(err) == classPrecondition {
				n, etag = 0, nil // replaced between attempts: read the new one whole
			}
			return err
		}
		defer out.Body.Close()
		if etag == nil && out.ETag != nil {
			etag = aws.String(*out.ETag)
		}
		body := io.Reader(out.Body)
		if out.ContentRange == nil && start > 0 {
			// The service ignored Range and sent the whole object.
			if _, err := io.CopyN(io.Discard, body, start); err != nil {
				if errors.Is(err, io.EOF) {
					eof = true
					return nil
				}
				return err
			}
		}
		m, rerr := io.ReadFull(body, p[n:])
		n += m
		s.stats.readBytes.Add(int64(m))
		switch {
		case rerr == nil:
			return nil
		case errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF):
			if out.ContentLength == nil || int64(m) >= *out.ContentLength {
				eof = true // the object ends here
				return nil
			}
			return fmt.Errorf("body cut after %d of %d bytes: %w", m, *out.ContentLength, io.ErrUnexpectedEOF)
		}
		return rerr
	})
	if errors.Is(err, errRange) {
		return n, io.EOF
	}
	if err != nil {
		return n, err
	}
	if eof && n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Put implements backend.Store: one PUT, or a multipart upload for
// objects larger than Options.PartSize.
func (s *Store) Put(ctx context.Context, name string, data []byte) error {
	ctx, done, err := s.begin(ctx, "put", name, true)
	if err != nil {
		return err
	}
	defer done()
	s.stats.puts.Add(1)
	if int64(len(data)) > s.opts.PartSize {
		return s.putMultipart(ctx, name, data)
	}
	key := s.key(name)
	err = s.do(ctx, "put", name, func(ctx context.Context) error {
		_, err := s.c.PutObject(ctx, &s3.PutObjectInput{
			Bucket:        &s.bucket,
			Key:           &key,
			Body:          bytes.NewReader(data),
			ContentLength: aws.Int64(int64(len(data))),
		})
		return err
	})
	if err == nil {
		s.stats.writeBytes.Add(int64(len(data)))
	}
	return err
}

// putMultipart uploads data in parts, in parallel; S3 makes the object
// visible when the upload completes. On failure the upload is aborted.
func (s *Store) putMultipart(ctx context.Context, name string, data []byte) error {
	s.stats.multipartUploads.Add(1)
	key := s.key(name)
	partSize := s.opts.PartSize
	if need := (int64(len(data)) + MaxParts - 1) / MaxParts; need > partSize {
		partSize = need
	}
	var uploadID string
	err := s.do(ctx, "create-multipart", name, func(ctx context.Context) error {
		out, err := s.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &key})
		if err == nil {
			if out.UploadId == nil {
				return errors.New("CreateMultipartUpload returned no upload ID")
			}
			uploadID = *out.UploadId
		}
		return err
	})
	if err != nil {
		return err
	}
	nparts := int((int64(len(data)) + partSize - 1) / partSize)
	parts := make([]types.CompletedPart, nparts)
	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var errOnce sync.Once
	var partErr error
	next := make(chan int)
	workers := min(nparts, max(1, s.opts.MaxConcurrency/2), 8)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				lo := int64(i) * partSize
				hi := min(lo+partSize, int64(len(data)))
				num := int32(i + 1)
				err := s.do(pctx, "upload-part", name, func(ctx context.Context) error {
					out, err := s.c.UploadPart(ctx, &s3.UploadPartInput{
						Bucket: &s.bucket, Key: &key, UploadId: &uploadID, PartNumber: &num,
						Body: bytes.NewReader(data[lo:hi]), ContentLength: aws.Int64(hi - lo),
					})
					if err == nil {
						parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num)}
					}
					return err
				})
				if err != nil {
					errOnce.Do(func() { partErr = err; cancel() })
				}
			}
		}()
	}
feed:
	for i := range nparts {
		select {
		case next <- i:
		case <-pctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	cancel()
	if partErr == nil && ctx.Err() != nil {
		partErr = s.ctxError("put", name, ctx)
	}
	if partErr == nil {
		completed := false
		partErr = s.do(ctx, "complete-multipart", name, func(actx context.Context) error {
			_, err := s.c.CompleteMultipartUpload(actx, &s3.CompleteMultipartUploadInput{
				Bucket: &s.bucket, Key: &key, UploadId: &uploadID,
				MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
			})
			var noUpload *types.NoSuchUpload
			if errors.As(err, &noUpload) && completed {
				// An earlier attempt completed it but its answer was lost.
				return nil
			}
			if err != nil && classify(err) == classTransient {
				completed = true // it may have: accept NoSuchUpload from now on
			}
			return err
		})
		if partErr == nil {
			s.stats.writeBytes.Add(int64(len(data)))
			return nil
		}
	}
	// Abort even when ctx is done, bounded on its own.
	actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.AttemptTimeout)
	defer acancel()
	if aerr := s.do(actx, "abort-multipart", name, func(ctx context.Context) error {
		_, err := s.c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: &uploadID})
		return err
	}); aerr != nil {
		s.log.Warn("s3: aborting a failed multipart upload failed; the bucket's lifecycle rules must clean it up",
			"object", name, "upload_id", uploadID, "err", aerr)
	}
	return partErr
}

// Delete implements backend.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	ctx, done, err := s.begin(ctx, "delete", name, true)
	if err != nil {
		return err
	}
	defer done()
	s.stats.deletes.Add(1)
	key := s.key(name)
	err = s.do(ctx, "delete", name, func(ctx context.Context) error {
		_, err := s.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key})
		return err
	})
	if errors.Is(err, backend.ErrNotFound) {
		return nil
	}
	return err
}

// List implements backend.Store with ListObjectsV2, a page at a time; fn
// runs between requests, never while one holds a concurrency slot.
func (s *Store) List(ctx context.Context, prefix string, fn func(backend.ObjectInfo) error) error {
	ctx, done, err := s.begin(ctx, "list", prefix, false)
	if err != nil {
		return err
	}
	defer done()
	s.stats.lists.Add(1)
	full := s.key(prefix)
	var token *string
	for {
		var out *s3.ListObjectsV2Output
		err := s.do(ctx, "list", prefix, func(ctx context.Context) error {
			var err error
			out, err = s.c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
				Bucket: &s.bucket, Prefix: &full, ContinuationToken: token,
			})
			return err
		})
		if err != nil {
			return err
		}
		for _, obj := range out.Contents {
			if obj.Key == nil || !strings.HasPrefix(*obj.Key, s.prefix) {
				continue
			}
			name := (*obj.Key)[len(s.prefix):]
			if backend.ValidName(name) != nil {
				continue // not one of ours
			}
			info := backend.ObjectInfo{Name: name}
			if obj.Size != nil {
				info.Size = *obj.Size
			}
			if obj.LastModified != nil {
				info.ModTime = *obj.LastModified
			}
			if err := fn(info); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return s.ctxError("list", prefix, ctx)
			}
		}
		if out.IsTruncated == nil || !*out.IsTruncated || out.NextContinuationToken == nil {
			return nil
		}
		token = out.NextContinuationToken
	}
}

// Stat implements backend.Store with HEAD.
func (s *Store) Stat(ctx context.Context, name string) (backend.ObjectInfo, error) {
	ctx, done, err := s.begin(ctx, "head", name, true)
	if err != nil {
		return backend.ObjectInfo{}, err
	}
	defer done()
	return s.stat(ctx, name)
}

func (s *Store) stat(ctx context.Context, name string) (backend.ObjectInfo, error) {
	s.stats.heads.Add(1)
	key := s.key(name)
	info := backend.ObjectInfo{Name: name}
	err := s.do(ctx, "head", name, func(ctx context.Context) error {
		out, err := s.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
		if err != nil {
			return err
		}
		if out.ContentLength != nil {
			info.Size = *out.ContentLength
		}
		if out.LastModified != nil {
			info.ModTime = *out.LastModified
		}
		return nil
	})
	if err != nil {
		return backend.ObjectInfo{}, err
	}
	return info, nil
}

// Close implements backend.Store: calls in flight are cancelled and
// waited for.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return fmt.Errorf("s3: close: %w", backend.ErrClosed)
	}
	s.mu.closed = true
	s.mu.Unlock()
	s.closeCancel()
	s.wg.Wait()
	if s.idle != nil {
		s.idle.CloseIdleConnections()
	}
	return nil
}
