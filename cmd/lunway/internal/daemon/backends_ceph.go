//go:build ceph

package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/rados"
	"github.com/lunway/lunway/backend/rbd"
	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
)

// cephConnOptions converts a ceph section. Paths are used as given.
func cephConnOptions(c *config.Ceph) rados.ConnOptions {
	return rados.ConnOptions{
		ConfFile:       c.ConfFile,
		MonHost:        c.MonHost,
		User:           c.User,
		Keyring:        c.Keyring,
		ConnectTimeout: time.Duration(c.ConnectTimeout),
		OpTimeout:      time.Duration(c.OpTimeout),
		Config:         c.Options,
	}
}

// unavailableError is a FieldError-shaped error for a backend that is
// configured right but unreachable: it wraps blockdev.ErrUnavailable, so
// that the daemon serves the LUN as pending and retries.
type unavailableError struct {
	field string
	err   error
}

func (e *unavailableError) Error() string { return e.field + ": " + e.err.Error() }
func (e *unavailableError) Unwrap() error { return e.err }

// cephFieldError names the configuration field a Ceph error is about.
// backendField is the LUN's "….backend"; ceph the field of its ceph
// section.
func cephFieldError(err error, backendField, ceph string) error {
	var oe *rados.OptionError
	if !errors.As(err, &oe) {
		if errors.Is(err, blockdev.ErrUnavailable) {
			return &unavailableError{field: ceph, err: err}
		}
		if errors.Is(err, blockdev.ErrInUse) {
			return &config.FieldError{Field: backendField + ".exclusive_lock", Msg: err.Error()}
		}
		return &config.FieldError{Field: backendField, Msg: err.Error()}
	}
	field := ceph + "." + oe.Option
	switch {
	case oe.Option == "image" || oe.Option == "exclusive_lock":
		field = backendField + "." + oe.Option
	case oe.Option == "size":
		field = strings.TrimSuffix(backendField, ".backend") + ".size"
	case oe.Option == "features" || oe.Option == "object_size":
		field = backendField
	}
	if oe.Transient {
		return &unavailableError{field: field, err: fmt.Errorf("%s (%w)", oe.Msg, blockdev.ErrUnavailable)}
	}
	return &config.FieldError{Field: field, Msg: oe.Msg}
}

// openRADOS opens a RADOS store on the pool and namespace c names. The
// caller reports errors under the store's field; the error says which
// ceph option is wrong ("ceph.keyring: …").
func openRADOS(ctx context.Context, c *config.Ceph, log *slog.Logger) (backend.Store, error) {
	st, err := rados.Open(ctx, &rados.Options{
		ConnOptions: cephConnOptions(c),
		Pool:        c.Pool,
		Namespace:   c.Namespace,
		Logger:      log.With("pool", c.Pool, "namespace", c.Namespace),
	})
	var oe *rados.OptionError
	if errors.As(err, &oe) {
		return nil, cephFieldError(err, "", "ceph")
	}
	if err != nil {
		return nil, err
	}
	return st, nil
}

// openRBD opens (creating when missing and the LUN has a size) the RBD
// image of an rbd LUN, grows it to the configured size, and reads the
// identity kept in its metadata.
func openRBD(ctx context.Context, cfg *config.Config, lc config.LUN, field string, log *slog.Logger) (*openedBackend, error) {
	b := lc.Backend
	c := b.Ceph
	spec := c.Pool + "/" + b.Image
	if c.Namespace != "" {
		spec = c.Pool + "/" + c.Namespace + "/" + b.Image
	}
	dev, err := rbd.Open(ctx, &rbd.Options{
		ConnOptions:   cephConnOptions(c),
		Pool:          c.Pool,
		Namespace:     c.Namespace,
		Image:         b.Image,
		Create:        lc.Size > 0 && !lc.ReadOnly,
		SizeBytes:     int64(lc.Size),
		ReadOnly:      lc.ReadOnly,
		ExclusiveLock: b.ExclusiveLock,
		IOTimeout:     time.Duration(c.OpTimeout),
		Logger:        log,
	})
	if err != nil {
		return nil, cephFieldError(err, field, field+".ceph")
	}
	if err := growTo(dev, int64(lc.Size)); err != nil {
		dev.Close()
		return nil, &config.FieldError{Field: strings.TrimSuffix(field, ".backend") + ".size", Msg: err.Error()}
	}
	l := &rbdLUN{Device: dev, log: log.With("image", spec)}
	if err := l.readIdentity(ctx); err != nil {
		dev.Close()
		if errors.Is(err, blockdev.ErrUnavailable) {
			return nil, &unavailableError{field: field, err: err}
		}
		return nil, &config.FieldError{Field: field, Msg: err.Error()}
	}
	return &openedBackend{dev: l, key: backendKey(cfg, lc)}, nil
}

// rbdLUN is the device of an rbd LUN. It keeps the LUN's SCSI identity in
// the image's metadata (rbd image-meta lunway.naa and lunway.serial) so
// that every gateway serving the image presents the same device.
//
// The daemon's identity store follows the image: a LUN whose
// configuration names no naa or serial takes the image's (StoredIdentity)
// as if configured, and the identity the daemon settles on is written
// back to the image (KeepIdentity), so the first gateway to serve an
// image decides its identity for all. Two gateways opening a new image at
// the same moment may both write; the last write wins and the other
// gateway presents its own identity until it restarts.
type rbdLUN struct {
	*rbd.Device
	log         *slog.Logger
	naa, serial string // as stored in the image at open
}

func (l *rbdLUN) readIdentity(ctx context.Context) error {
	naa, okN, err := l.Metadata(ctx, rbd.MetadataNAA)
	if err != nil {
		return fmt.Errorf("reading the image's identity (%s): %w", rbd.MetadataNAA, err)
	}
	serial, okS, err := l.Metadata(ctx, rbd.MetadataSerial)
	if err != nil {
		return fmt.Errorf("reading the image's identity (%s): %w", rbd.MetadataSerial, err)
	}
	if okN {
		if _, err := (Identity{NAA: naa}).NAABytes(); err != nil {
			l.log.Warn("ignoring the image's identity", "key", rbd.MetadataNAA, "err", err)
			naa, okN = "", false
		}
	}
	if okS && (serial == "" || len(serial) > 252) {
		l.log.Warn("ignoring the image's identity", "key", rbd.MetadataSerial, "len", len(serial))
		serial, okS = "", false
	}
	l.naa, l.serial = naa, serial
	return nil
}

// StoredIdentity returns the identity kept in the image's metadata when
// it was opened ("" for what is not set).
func (l *rbdLUN) StoredIdentity() (naa, serial string) { return l.naa, l.serial }

// KeepIdentity writes the LUN's identity into the image's metadata when
// it differs from what is stored. A read-only LUN leaves the image alone.
func (l *rbdLUN) KeepIdentity(naa, serial string) error {
	if l.Info().ReadOnly || naa == l.naa && serial == l.serial {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	if naa != l.naa {
		if err := l.SetMetadata(ctx, rbd.MetadataNAA, naa); err != nil {
			return err
		}
		l.naa = naa
	}
	if serial != l.serial {
		if err := l.SetMetadata(ctx, rbd.MetadataSerial, serial); err != nil {
			return err
		}
		l.serial = serial
	}
	l.log.Info("LUN identity stored in the image", "naa", naa, "serial", serial)
	return nil
}
