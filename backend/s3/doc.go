// Package s3 is a backend.Store on an S3-compatible object service (AWS
// S3, Ceph radosgw, MinIO, ...), built on aws-sdk-go-v2.
//
// # Names
//
// Object name n is stored under key Prefix + "/" + n (or just n without a
// prefix). List strips the prefix again and skips keys that are not valid
// backend object names (someone else's objects under the same prefix).
// S3 lists keys in UTF-8 byte order, which for our names is the lexical
// order backend.Store promises.
//
// # Operations
//
//	ReadAt   GET with a Range header; a read that continues after a
//	         broken body pins the first response's ETag (If-Match), so
//	         that a concurrent replacement is never mixed into one read
//	Put      PUT; objects larger than Options.PartSize go through a
//	         multipart upload (parts in parallel), which S3 makes visible
//	         atomically at completion; a failed upload is aborted
//	Delete   DELETE (deleting a missing key is not an error in S3 either)
//	List     ListObjectsV2, page by page
//	Stat     HEAD
//
// S3 cannot modify an object in place, so Store does not implement
// backend.Overwriter; package cache offers it on top of any Store.
//
// Request and response checksums are computed only when an operation
// requires them ("when required"): the SDK's default of always adding
// CRC32 trailers breaks many S3-compatible services.
//
// # Failures
//
// At most Options.MaxConcurrency requests are in flight. Each attempt is
// bounded by Options.AttemptTimeout; transient failures (connection
// refused or reset, timeouts, HTTP 5xx, 429, SlowDown) are retried up to
// Options.MaxAttempts times with exponential backoff and full jitter,
// always within the caller's context. What still fails is reported as
// wrapping backend.ErrUnavailable; NoSuchKey as backend.ErrNotFound;
// quota and 507 as backend.ErrNoSpace; a missing bucket as
// ErrNoSuchBucket and refused credentials as ErrAccessDenied (both
// permanent: retrying does not help). Health reports whether the service
// answered the last request.
package s3
