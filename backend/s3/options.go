package s3

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// Defaults of Options.
const (
	DefaultRegion         = "us-east-1"
	DefaultPartSize       = 16 << 20
	DefaultMaxConcurrency = 32
	DefaultMaxAttempts    = 6
	DefaultRetryBaseDelay = 50 * time.Millisecond
	DefaultRetryMaxDelay  = 2 * time.Second
	DefaultAttemptTimeout = 60 * time.Second
	DefaultDialTimeout    = 5 * time.Second

	// MinPartSize and MaxPartSize are S3's limits on multipart parts.
	MinPartSize = 5 << 20
	MaxPartSize = 5 << 30
	// MaxParts is S3's limit on the parts of one upload.
	MaxParts = 10000
)

// Options configure a Store. Bucket is required; the zero value of every
// other field means its default.
type Options struct {
	// Endpoint is the service's URL ("http://127.0.0.1:7480"); empty
	// means AWS, resolved from Region.
	Endpoint string
	// Region signs requests; S3-compatible services mostly ignore it.
	Region string
	// Bucket holds the objects.
	Bucket string
	// Prefix is prepended to every object name, with a '/' between.
	Prefix string
	// PathStyle addresses the bucket in the path (http://host/bucket/key)
	// instead of the host name; most S3-compatible services need it.
	PathStyle bool

	// AccessKey and SecretKey (and optionally SessionToken) are static
	// credentials. Without them, CredentialsFile and Profile select a
	// shared credentials file and profile; without those, the SDK's
	// default chain applies (AWS_ACCESS_KEY_ID and friends, ~/.aws).
	AccessKey, SecretKey, SessionToken string
	CredentialsFile                    string
	Profile                            string

	// CreateBucket creates the bucket at Open when it does not exist.
	CreateBucket bool
	// OpenUnreachable makes Open succeed while the service does not
	// answer (a daemon starting during an outage); the bucket is then
	// checked, and created, by CheckBucket.
	OpenUnreachable bool

	// PartSize is the multipart part size; objects larger than it are
	// uploaded in parts. Between MinPartSize and MaxPartSize.
	PartSize int64
	// MaxConcurrency bounds the requests in flight.
	MaxConcurrency int
	// MaxAttempts bounds the attempts of one request (1: no retries).
	MaxAttempts int
	// RetryBaseDelay and RetryMaxDelay shape the exponential backoff
	// between attempts (full jitter).
	RetryBaseDelay, RetryMaxDelay time.Duration
	// AttemptTimeout bounds one attempt (a hung connection counts as a
	// transient failure and is retried).
	AttemptTimeout time.Duration
	// DialTimeout bounds connecting to the service.
	DialTimeout time.Duration

	// Logger receives warnings (retries, outages); nil discards them.
	Logger *slog.Logger
}

// Validate reports whether the options are usable.
func (o *Options) Validate() error {
	if o.Bucket == "" {
		return errors.New("s3: Bucket is required")
	}
	if o.Endpoint != "" {
		u, err := url.Parse(o.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("s3: Endpoint %q is not an http(s) URL", o.Endpoint)
		}
	}
	if strings.HasPrefix(o.Prefix, "/") || len(o.Prefix) > 512 {
		return fmt.Errorf("s3: Prefix %q: must not start with '/' and be at most 512 bytes", o.Prefix)
	}
	if (o.AccessKey == "") != (o.SecretKey == "") {
		return errors.New("s3: AccessKey and SecretKey go together")
	}
	if o.PartSize != 0 && (o.PartSize < MinPartSize || o.PartSize > MaxPartSize) {
		return fmt.Errorf("s3: PartSize %d: must be in [%d, %d]", o.PartSize, MinPartSize, MaxPartSize)
	}
	if o.MaxConcurrency < 0 || o.MaxAttempts < 0 || o.RetryBaseDelay < 0 || o.RetryMaxDelay < 0 ||
		o.AttemptTimeout < 0 || o.DialTimeout < 0 {
		return errors.New("s3: negative concurrency, attempts or duration in Options")
	}
	return nil
}

func (o *Options) withDefaults() Options {
	var out Options
	if o != nil {
		out = *o
	}
	if out.Region == "" {
		out.Region = DefaultRegion
	}
	if out.PartSize == 0 {
		out.PartSize = DefaultPartSize
	}
	if out.MaxConcurrency == 0 {
		out.MaxConcurrency = DefaultMaxConcurrency
	}
	if out.MaxAttempts == 0 {
		out.MaxAttempts = DefaultMaxAttempts
	}
	if out.RetryBaseDelay == 0 {
		out.RetryBaseDelay = DefaultRetryBaseDelay
	}
	if out.RetryMaxDelay == 0 {
		out.RetryMaxDelay = DefaultRetryMaxDelay
	}
	if out.AttemptTimeout == 0 {
		out.AttemptTimeout = DefaultAttemptTimeout
	}
	if out.DialTimeout == 0 {
		out.DialTimeout = DefaultDialTimeout
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	return out
}

// keyPrefix is what goes before every object name.
func (o *Options) keyPrefix() string {
	p := strings.TrimSuffix(o.Prefix, "/")
	if p == "" {
		return ""
	}
	return p + "/"
}
