package rados

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"
)

// Defaults.
const (
	DefaultUser           = "admin"
	DefaultConnectTimeout = 10 * time.Second
	DefaultOpTimeout      = 30 * time.Second
	DefaultMaxConcurrency = 64
	DefaultMaxListNames   = 4 << 20
	// MaxWriteStep is the largest write step of one RADOS operation: below
	// the OSD's osd_max_write_size (90 MiB by default), which applies to
	// each step, not to the operation.
	MaxWriteStep = 32 << 20
	// DefaultMaxObjectBytes is the largest object Put and WriteAt accept,
	// the OSD's default osd_max_object_size.
	DefaultMaxObjectBytes = 128 << 20
)

// ConnOptions locate a Ceph cluster and say how to talk to it. At least
// one of ConfFile and MonHost is needed.
type ConnOptions struct {
	// ConfFile is a ceph.conf to read; empty reads none (librados' own
	// search of /etc/ceph is not used, so that nothing implicit applies).
	ConfFile string
	// MonHost lists the monitors ("10.0.0.1,10.0.0.2:6789" or
	// "[v2:127.0.0.1:3300,v1:127.0.0.1:6789]"); it overrides ConfFile's.
	MonHost string
	// User is the cephx user without "client."; empty means "admin".
	User string
	// Keyring is the keyring file; empty means ConfFile's setting.
	Keyring string
	// ConnectTimeout bounds connecting (client_mount_timeout); zero means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// OpTimeout bounds each operation on the cluster (rados_osd_op_timeout
	// and rados_mon_op_timeout): an operation that cannot complete in
	// time, because the cluster is unreachable, fails with ETIMEDOUT, which
	// is reported as backend.ErrUnavailable. Zero means DefaultOpTimeout.
	OpTimeout time.Duration
	// Config holds further librados options ("rbd_cache": "false"),
	// applied after everything above. librados' own logging to stderr is
	// off unless Config turns it on ("log_to_stderr": "true").
	Config map[string]string
}

// withDefaults returns a copy with zero fields defaulted.
func (o ConnOptions) withDefaults() ConnOptions {
	o.User = strings.TrimPrefix(o.User, "client.")
	if o.User == "" {
		o.User = DefaultUser
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.OpTimeout == 0 {
		o.OpTimeout = DefaultOpTimeout
	}
	return o
}

// Validate reports whether the options are usable, checking that the
// files they name exist and are readable. Errors wrap ErrConfig and name
// the field.
func (o *ConnOptions) Validate() error {
	if o.ConfFile == "" && o.MonHost == "" {
		return optionErr("mon_host", "one of mon_host and conf_file is required")
	}
	if o.ConnectTimeout < 0 || o.OpTimeout < 0 {
		return optionErr("op_timeout", "timeouts must not be negative")
	}
	if strings.ContainsAny(o.User, " \t\n=") {
		return optionErr("user", "%q is not a cephx user name", o.User)
	}
	for _, f := range []struct{ field, path string }{{"conf_file", o.ConfFile}, {"keyring", o.Keyring}} {
		if f.path == "" {
			continue
		}
		fh, err := os.Open(f.path)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return optionErr(f.field, "%s: %v", f.path, err)
		}
		fh.Close()
	}
	for k := range o.Config {
		if k == "" || strings.ContainsAny(k, " \t\n=") {
			return optionErr("options", "%q is not an option name", k)
		}
	}
	return nil
}

// Options configure a Store: the cluster, the pool and namespace, and
// limits. Zero fields take defaults.
type Options struct {
	ConnOptions
	// Pool is the RADOS pool; required. It must exist.
	Pool string
	// Namespace is the RADOS namespace inside the pool; empty is the
	// default namespace.
	Namespace string
	// MaxConcurrency bounds the librados calls in flight; zero means
	// DefaultMaxConcurrency.
	MaxConcurrency int
	// MaxListNames bounds the names one List gathers (see the package
	// documentation); zero means DefaultMaxListNames.
	MaxListNames int
	// MaxObjectBytes bounds the size of an object (Put) and the end of a
	// WriteAt; zero means DefaultMaxObjectBytes. Raise it only with the
	// cluster's osd_max_object_size.
	MaxObjectBytes int64
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
}

// Validate reports whether the options are usable.
func (o *Options) Validate() error {
	if err := o.ConnOptions.Validate(); err != nil {
		return err
	}
	if o.Pool == "" {
		return optionErr("pool", "required")
	}
	if len(o.Namespace) > 64 || strings.ContainsAny(o.Namespace, "\x00") {
		return optionErr("namespace", "%q is not a RADOS namespace (at most 64 bytes)", o.Namespace)
	}
	if o.MaxConcurrency < 0 || o.MaxListNames < 0 || o.MaxObjectBytes < 0 {
		return fmt.Errorf("%w: store limits must not be negative", ErrConfig)
	}
	return nil
}

func (o Options) withDefaults() Options {
	o.ConnOptions = o.ConnOptions.withDefaults()
	if o.MaxConcurrency == 0 {
		o.MaxConcurrency = DefaultMaxConcurrency
	}
	if o.MaxListNames == 0 {
		o.MaxListNames = DefaultMaxListNames
	}
	if o.MaxObjectBytes == 0 {
		o.MaxObjectBytes = DefaultMaxObjectBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
