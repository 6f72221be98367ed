//go:build ceph

package rados

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"syscall"
	"time"

	gorados "github.com/ceph/go-ceph/rados"

	"github.com/lunway/lunway/backend"
)

// Conn is a connection to a Ceph cluster (a librados cluster handle). It
// is safe for concurrent use. Stores and RBD devices each own one.
type Conn struct {
	conn *gorados.Conn
	opts ConnOptions // with defaults

	mu struct {
		sync.Mutex
		closed bool
	}
}

// Connect connects to the cluster opts describes, within
// opts.ConnectTimeout or ctx's deadline, whichever comes first. Errors
// name what is wrong: a missing or unreadable file and a rejected key wrap
// ErrConfig; monitors that do not answer in time wrap
// backend.ErrUnavailable (blockdev.ErrUnavailable), so that callers may
// retry later.
func Connect(ctx context.Context, opts *ConnOptions) (*Conn, error) {
	var o ConnOptions
	if opts != nil {
		o = *opts
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	timeout := o.ConnectTimeout
	if dl, ok := ctx.Deadline(); ok {
		if r := time.Until(dl); r < timeout {
			timeout = max(r, 100*time.Millisecond)
		}
	}
	raw, err := gorados.NewConnWithUser(o.User)
	if err != nil {
		return nil, wrap("connect", "", err)
	}
	c := &Conn{conn: raw, opts: o}
	if err := c.configure(o, timeout); err != nil {
		raw.Shutdown()
		return nil, err
	}
	start := time.Now()
	if err := raw.Connect(); err != nil {
		raw.Shutdown()
		return nil, c.connectError(err, time.Since(start))
	}
	return c, nil
}

// secs spells d for librados, in whole seconds (some of its timeouts
// are integers), rounded up.
func secs(d time.Duration) string {
	return strconv.FormatInt(int64(max(1, (d+time.Second-1)/time.Second)), 10)
}

func (c *Conn) configure(o ConnOptions, connectTimeout time.Duration) error {
	if o.ConfFile != "" {
		if err := c.conn.ReadConfigFile(o.ConfFile); err != nil {
			return optionErr("conf_file", "cannot read %s: %v", o.ConfFile, err)
		}
	}
	type kv struct{ k, v string }
	set := []kv{
		{"log_to_stderr", "false"},
		{"err_to_stderr", "false"},
		{"client_mount_timeout", secs(connectTimeout)},
		{"rados_osd_op_timeout", secs(o.OpTimeout)},
		{"rados_mon_op_timeout", secs(o.OpTimeout)},
	}
	if o.MonHost != "" {
		set = append(set, kv{"mon_host", o.MonHost})
	}
	if o.Keyring != "" {
		set = append(set, kv{"keyring", o.Keyring})
	}
	for k, v := range o.Config {
		set = append(set, kv{k, v})
	}
	for _, s := range set {
		if err := c.conn.SetConfigOption(s.k, s.v); err != nil {
			field := s.k
			switch s.k {
			case "mon_host", "keyring":
			default:
				field = "options." + s.k
			}
			return optionErr(field, "%q rejected by librados: %v", s.v, err)
		}
	}
	return nil
}

// connectError explains a failed rados_connect.
func (c *Conn) connectError(err error, took time.Duration) error {
	o := c.opts
	mons := o.MonHost
	if mons == "" {
		mons = "from " + o.ConfFile
	}
	keyring := o.Keyring
	if keyring == "" {
		if v, gerr := c.conn.GetConfigOption("keyring"); gerr == nil {
			keyring = v
		}
	}
	errno := Errno(err)
	switch errno {
	case syscall.ETIMEDOUT, syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH:
		return &OptionError{Option: "mon_host", Transient: true,
			Msg: fmt.Sprintf("no monitor answered (%s) within %v: %v", mons, took.Round(time.Millisecond), err)}
	case syscall.EACCES, syscall.EPERM:
		return optionErr("keyring", "the monitors refused client.%s (keyring %s: wrong key, or no such user): %v",
			o.User, keyring, err)
	case syscall.ENOENT:
		return optionErr("keyring", "no key for client.%s (keyring %s): %v", o.User, keyring, err)
	case syscall.EINVAL:
		return optionErr("mon_host", "%s: %v", mons, err)
	}
	if Transient(errno) {
		return &OptionError{Option: "mon_host", Transient: true, Msg: fmt.Sprintf("connecting to %s: %v", mons, err)}
	}
	return fmt.Errorf("rados: connecting to %s as client.%s: %w", mons, o.User, err)
}

// Raw returns the go-ceph connection, for packages (backend/rbd) that
// open images on it. It must not be shut down by them.
func (c *Conn) Raw() *gorados.Conn { return c.conn }

// Options returns the options the connection was made with, defaults
// applied.
func (c *Conn) Options() ConnOptions { return c.opts }

// OpenIOContext opens an I/O context on pool, set to namespace. A pool
// that does not exist is an error wrapping ErrConfig that names it.
func (c *Conn) OpenIOContext(pool, namespace string) (*gorados.IOContext, error) {
	c.mu.Lock()
	closed := c.mu.closed
	c.mu.Unlock()
	if closed {
		return nil, backend.ErrClosed
	}
	io, err := c.conn.OpenIOContext(pool)
	if err != nil {
		if Errno(err) == syscall.ENOENT {
			return nil, optionErr("pool", "%q does not exist", pool)
		}
		return nil, wrap("open pool", pool, err)
	}
	io.SetNamespace(namespace)
	return io, nil
}

// Close shuts the connection down. Everything opened on it must be
// closed first. A second Close returns ErrClosed.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return backend.ErrClosed
	}
	c.mu.closed = true
	c.conn.Shutdown()
	return nil
}

// IsConfig reports whether err is a configuration error (not worth
// retrying), as opposed to a transient one.
func IsConfig(err error) bool { return errors.Is(err, ErrConfig) }
