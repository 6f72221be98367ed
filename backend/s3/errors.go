package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/lunway/lunway/backend"
)

var (
	// ErrNoSuchBucket: the bucket does not exist (and Options.CreateBucket
	// is off). Permanent.
	ErrNoSuchBucket = errors.New("s3: no such bucket")
	// ErrAccessDenied: the service refused the credentials or the request.
	// Permanent.
	ErrAccessDenied = errors.New("s3: access denied")
)

// class is what a failed request means for the caller.
type class uint8

const (
	classPermanent    class = iota // report as is
	classTransient                 // retry, then ErrUnavailable
	classNotFound                  // backend.ErrNotFound
	classNoSpace                   // backend.ErrNoSpace
	classNoBucket                  // ErrNoSuchBucket
	classDenied                    // ErrAccessDenied
	classRange                     // HTTP 416: the range starts at or past the end
	classPrecondition              // HTTP 412: If-Match failed (the object changed)
)

// Error codes of S3 and S3-compatible services, by what they mean.
var codeClass = map[string]class{
	"NoSuchKey":                   classNotFound,
	"NotFound":                    classNotFound, // HEAD has no body: the SDK names the status
	"NoSuchBucket":                classNoBucket,
	"AccessDenied":                classDenied,
	"InvalidAccessKeyId":          classDenied,
	"SignatureDoesNotMatch":       classDenied,
	"AllAccessDisabled":           classDenied,
	"InvalidRange":                classRange,
	"PreconditionFailed":          classPrecondition,
	"QuotaExceeded":               classNoSpace, // radosgw user and bucket quotas
	"InsufficientStorage":         classNoSpace,
	"XMinioStorageFull":           classNoSpace,
	"SlowDown":                    classTransient,
	"ServiceUnavailable":          classTransient,
	"InternalError":               classTransient,
	"RequestTimeout":              classTransient,
	"RequestTimeTooSkewed":        classTransient,
	"Throttling":                  classTransient,
	"ThrottlingException":         classTransient,
	"TooManyRequests":             classTransient,
	"RequestLimitExceeded":        classTransient,
	"OperationAborted":            classTransient,
	"XMinioServerNotInitialized":  classTransient,
	"ExpiredToken":                classDenied,
	"InvalidToken":                classDenied,
	"TokenRefreshRequired":        classDenied,
	"NoSuchUpload":                classPermanent,
	"EntityTooLarge":              classNoSpace,
	"XAmzContentSHA256Mismatch":   classTransient, // a body damaged in flight
	"BadDigest":                   classTransient,
	"IncompleteBody":              classTransient,
	"RequestTimeoutException":     classTransient,
	"ServiceUnavailableException": classTransient,
}

// classify decides what a request's error means. It never matches error
// strings: it looks at the API error code, the HTTP status, and the
// network error types.
func classify(err error) class {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		if c, ok := codeClass[apiErr.ErrorCode()]; ok {
			return c
		}
	}
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) && respErr.HTTPStatusCode() != 0 {
		return statusClass(respErr.HTTPStatusCode())
	}
	// No HTTP answer: the request never got one.
	var sendErr *smithyhttp.RequestSendError
	if errors.As(err, &sendErr) {
		return classTransient
	}
	var netErr net.Error
	switch {
	case errors.As(err, &netErr),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ETIMEDOUT),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, context.DeadlineExceeded): // an attempt's own timeout
		return classTransient
	}
	return classPermanent
}

// statusClass classifies an HTTP status without an S3 error code.
func statusClass(status int) class {
	switch {
	case status == 404:
		return classNotFound
	case status == 403 || status == 401:
		return classDenied
	case status == 416:
		return classRange
	case status == 412:
		return classPrecondition
	case status == 507:
		return classNoSpace
	case status == 408 || status == 429 || status >= 500:
		return classTransient
	}
	return classPermanent
}

// opError wraps a failed operation's cause with the sentinel its class
// maps to, naming the operation and the object.
func opError(op, name string, c class, err error) error {
	switch c {
	case classTransient:
		return fmt.Errorf("s3: %s %q: %w: %w", op, name, backend.ErrUnavailable, err)
	case classNotFound:
		return fmt.Errorf("s3: %s %q: %w", op, name, backend.ErrNotFound)
	case classNoSpace:
		return fmt.Errorf("s3: %s %q: %w: %w", op, name, backend.ErrNoSpace, err)
	case classNoBucket:
		return fmt.Errorf("s3: %s %q: %w: %w", op, name, ErrNoSuchBucket, err)
	case classDenied:
		return fmt.Errorf("s3: %s %q: %w: %w", op, name, ErrAccessDenied, err)
	}
	return fmt.Errorf("s3: %s %q: %w", op, name, err)
}
