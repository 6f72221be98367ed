package rados

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/blockdev"
)

// cephCoded mimics go-ceph's errors, which report negative codes.
type cephCoded int

func (c cephCoded) Error() string  { return fmt.Sprintf("ret=%d", int(c)) }
func (c cephCoded) ErrorCode() int { return int(c) }

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		errno syscall.Errno
		want  error // nil: no sentinel
	}{
		{syscall.ENOENT, backend.ErrNotFound},
		{syscall.ENOSPC, backend.ErrNoSpace},
		{syscall.EDQUOT, backend.ErrNoSpace},
		{syscall.ETIMEDOUT, backend.ErrUnavailable},
		{syscall.ENOTCONN, backend.ErrUnavailable},
		{syscall.ESHUTDOWN, backend.ErrUnavailable},
		{syscall.ECONNREFUSED, backend.ErrUnavailable},
		{syscall.EHOSTUNREACH, backend.ErrUnavailable},
		{syscall.EAGAIN, backend.ErrUnavailable},
		{syscall.EIO, nil},
		{syscall.EINVAL, nil},
		{syscall.EACCES, nil},
		{syscall.EFBIG, nil},
	}
	all := []error{backend.ErrNotFound, backend.ErrNoSpace, backend.ErrUnavailable}
	for _, tt := range tests {
		if got := Sentinel(tt.errno); got != tt.want {
			t.Errorf("Sentinel(%v) = %v, want %v", tt.errno, got, tt.want)
		}
		// The sentinel, the errno and blockdev's identity all hold through
		// wrapping, whichever form the errno arrives in.
		for _, src := range []error{tt.errno, cephCoded(-int(tt.errno)), fmt.Errorf("ctx: %w", cephCoded(-int(tt.errno)))} {
			err := fmt.Errorf("outer: %w", wrap("read", "obj", src))
			if !errors.Is(err, tt.errno) {
				t.Errorf("wrap(%v): errors.Is(errno) false: %v", src, err)
			}
			for _, s := range all {
				if errors.Is(err, s) != (s == tt.want) {
					t.Errorf("wrap(%v): errors.Is(%v) = %v", src, s, errors.Is(err, s))
				}
			}
			var e *Error
			if !errors.As(err, &e) || e.Errno != tt.errno || e.Op != "read" || e.Name != "obj" {
				t.Errorf("wrap(%v) = %#v", src, e)
			}
		}
	}
	if !errors.Is(wrap("x", "", syscall.ETIMEDOUT), blockdev.ErrUnavailable) {
		t.Error("ErrUnavailable is not blockdev's")
	}
	if wrap("x", "y", nil) != nil {
		t.Error("wrap(nil) != nil")
	}
	plain := errors.New("no errno")
	if err := wrap("x", "y", plain); !errors.Is(err, plain) || Errno(err) != 0 {
		t.Errorf("wrap(plain) = %v", err)
	}
	if Errno(io.EOF) != 0 {
		t.Error("Errno(io.EOF) != 0")
	}
	if got := (&Error{Op: "stat", Name: "a/b", Errno: syscall.ENOENT}).Error(); !strings.Contains(got, "stat a/b") || !strings.Contains(got, "errno 2") {
		t.Errorf("Error() = %q", got)
	}
}

func TestOptionsValidate(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "ceph.conf")
	keyring := filepath.Join(dir, "keyring")
	for _, f := range []string{conf, keyring} {
		if err := os.WriteFile(f, []byte("[global]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "nope")
	tests := []struct {
		name  string
		o     Options
		field string // "" means valid
	}{
		{"conf", Options{ConnOptions: ConnOptions{ConfFile: conf}, Pool: "rbd"}, ""},
		{"mon", Options{ConnOptions: ConnOptions{MonHost: "127.0.0.1:6789", Keyring: keyring, User: "client.x"}, Pool: "p", Namespace: "n"}, ""},
		{"no cluster", Options{Pool: "rbd"}, "mon_host"},
		{"no pool", Options{ConnOptions: ConnOptions{ConfFile: conf}}, "pool"},
		{"missing conf", Options{ConnOptions: ConnOptions{ConfFile: missing}, Pool: "rbd"}, "conf_file: " + missing + ": no such file"},
		{"missing keyring", Options{ConnOptions: ConnOptions{MonHost: "1.2.3.4", Keyring: missing}, Pool: "rbd"}, "keyring: " + missing},
		{"negative timeout", Options{ConnOptions: ConnOptions{ConfFile: conf, OpTimeout: -time.Second}, Pool: "rbd"}, "op_timeout"},
		{"bad user", Options{ConnOptions: ConnOptions{ConfFile: conf, User: "a b"}, Pool: "rbd"}, "user"},
		{"bad option", Options{ConnOptions: ConnOptions{ConfFile: conf, Config: map[string]string{"a=b": "c"}}, Pool: "rbd"}, "options"},
		{"long namespace", Options{ConnOptions: ConnOptions{ConfFile: conf}, Pool: "rbd", Namespace: strings.Repeat("n", 65)}, "namespace"},
		{"negative limit", Options{ConnOptions: ConnOptions{ConfFile: conf}, Pool: "rbd", MaxConcurrency: -1}, "limits"},
	}
	for _, tt := range tests {
		err := tt.o.Validate()
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.field != "" && (err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.field)):
			t.Errorf("%s: Validate = %v; want ErrConfig naming %q", tt.name, err, tt.field)
		}
	}
	d := (Options{ConnOptions: ConnOptions{User: "client.lunway"}}).withDefaults()
	if d.User != "lunway" || d.ConnectTimeout != DefaultConnectTimeout || d.OpTimeout != DefaultOpTimeout ||
		d.MaxConcurrency != DefaultMaxConcurrency || d.MaxListNames != DefaultMaxListNames ||
		d.MaxObjectBytes != DefaultMaxObjectBytes || d.Logger == nil {
		t.Errorf("withDefaults = %+v", d)
	}
	if u := (ConnOptions{}).withDefaults().User; u != DefaultUser {
		t.Errorf("default user %q", u)
	}
}

func TestOptionError(t *testing.T) {
	cfg := OptionErr("keyring", "%s: missing", "/k")
	var oe *OptionError
	if !errors.As(cfg, &oe) || oe.Option != "keyring" || oe.Msg != "/k: missing" || cfg.Error() != "ceph keyring: /k: missing" {
		t.Fatalf("OptionErr = %#v (%v)", cfg, cfg)
	}
	if !errors.Is(cfg, ErrConfig) || errors.Is(cfg, backend.ErrUnavailable) {
		t.Errorf("configuration error: Is(ErrConfig) %v, Is(ErrUnavailable) %v", errors.Is(cfg, ErrConfig), errors.Is(cfg, backend.ErrUnavailable))
	}
	tr := fmt.Errorf("open: %w", &OptionError{Option: "mon_host", Msg: "no answer", Transient: true})
	if errors.Is(tr, ErrConfig) || !errors.Is(tr, blockdev.ErrUnavailable) {
		t.Errorf("transient error: Is(ErrConfig) %v, Is(ErrUnavailable) %v", errors.Is(tr, ErrConfig), errors.Is(tr, blockdev.ErrUnavailable))
	}
}
