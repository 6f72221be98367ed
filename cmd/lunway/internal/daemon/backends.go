package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/dir"
	bmem "github.com/lunway/lunway/backend/mem"
	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/file"
	"github.com/lunway/lunway/blockmap"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"github.com/lunway/lunway/cmd/lunway/internal/metrics"
)

// openedBackend is a LUN's storage, ready to serve.
type openedBackend struct {
	dev blockdev.Device
	// key identifies the backing across restarts (identity.json).
	key string
	// release runs after dev.Close.
	release func()
	// cacheStats, when set, reads the statistics of a local cache in
	// front of the LUN's store, for the metrics (set by the cache hook).
	cacheStats func() metrics.CacheStats
}

// openTimeout bounds opening one backend at start.
const openTimeout = 30 * time.Second

// openBackend opens (creating when missing) the storage of one LUN.
// Errors are *config.FieldError naming field (the LUN's backend); they wrap
// blockdev.ErrUnavailable when the backend is unreachable rather than
// misconfigured.
func (d *Daemon) openBackend(cfg *config.Config, lc config.LUN, field string) (*openedBackend, error) {
	if d.testOpen != nil {
		return d.testOpen(cfg, lc, field)
	}
	ctx, cancel := context.WithTimeout(d.ctx, openTimeout)
	defer cancel()
	b := lc.Backend
	switch b.Type {
	case "file":
		return openFile(ctx, cfg, lc, field)
	case "blockmap":
		return d.openVolume(ctx, cfg, lc, field)
	case "rbd":
		return openRBD(ctx, cfg, lc, field, d.log)
	}
	return nil, &config.FieldError{Field: field + ".type", Msg: fmt.Sprintf("unknown backend type %q", b.Type)}
}

func openFile(ctx context.Context, cfg *config.Config, lc config.LUN, field string) (*openedBackend, error) {
	path := cfg.ResolvePath(lc.Backend.Path)
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &config.FieldError{Field: field + ".path", Msg: err.Error()}
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o750); err != nil {
		return nil, &config.FieldError{Field: field + ".path", Msg: err.Error()}
	}
	if lc.ReadOnly {
		// A read-only LUN over a missing file: create it (zeros) first.
		if _, err := os.Stat(abs); errors.Is(err, os.ErrNotExist) {
			dev, err := file.Open(ctx, abs, &file.Options{Create: true, SizeBytes: int64(lc.Size)})
			if err != nil {
				return nil, &config.FieldError{Field: field + ".path", Msg: err.Error()}
			}
			if err := dev.Close(); err != nil {
				return nil, &config.FieldError{Field: field + ".path", Msg: err.Error()}
			}
		}
	}
	dev, err := file.Open(ctx, abs, &file.Options{
		Create:    !lc.ReadOnly,
		SizeBytes: int64(lc.Size),
		Direct:    lc.Backend.Direct,
		ReadOnly:  lc.ReadOnly,
	})
	if err != nil {
		return nil, &config.FieldError{Field: field + ".path", Msg: err.Error()}
	}
	if err := growTo(dev, int64(lc.Size)); err != nil {
		dev.Close()
		return nil, &config.FieldError{Field: field[:len(field)-len(".backend")] + ".size", Msg: err.Error()}
	}
	return &openedBackend{dev: dev, key: backendKey(cfg, lc)}, nil
}

// growTo grows dev to size when the configuration asks for more than it
// has; it never shrinks (that would destroy data a restart cannot undo).
func growTo(dev blockdev.Device, size int64) error {
	cur := dev.Info().SizeBytes
	if size == 0 || size == cur {
		return nil
	}
	if size < cur {
		return fmt.Errorf("%s is smaller than the existing %s; shrinking is refused (use `lunway volume resize` on a stopped volume)",
			config.Size(size), config.Size(cur))
	}
	r, ok := dev.(blockdev.Resizer)
	if !ok {
		return fmt.Errorf("the backing is %s and cannot grow to %s", config.Size(cur), config.Size(size))
	}
	return r.Resize(context.Background(), size)
}

// unavailableDevice stands in for a LUN whose backend is unreachable: it
// has the LUN's geometry and answers every I/O with ErrUnavailable, which
// the SCSI layer turns into BUSY, so initiators retry instead of giving up.
type unavailableDevice struct{ info blockdev.Info }

func (u *unavailableDevice) ReadAt(context.Context, []byte, int64) error { return errPending }
func (u *unavailableDevice) WriteAt(context.Context, []byte, int64, blockdev.WriteFlags) error {
	return errPending
}
func (u *unavailableDevice) Flush(context.Context) error { return errPending }
func (u *unavailableDevice) Info() blockdev.Info         { return u.info }
func (u *unavailableDevice) Close() error                { return nil }
func (u *unavailableDevice) Health() blockdev.Health     { return blockdev.Unavailable }

var errPending = fmt.Errorf("%w: the LUN's backend has not been opened yet", blockdev.ErrUnavailable)

// sharedStore is a Store used by several volumes (a volume, its snapshots
// and clones must share one to share segments).
type sharedStore struct {
	store backend.Store
	refs  int
}

// store returns the Store a blockmap backend names, opening it on first
// use, and a release function.
func (d *Daemon) store(ctx context.Context, cfg *config.Config, sc *config.Store, field string) (backend.Store, func(), error) {
	key, err := storeKey(cfg, sc)
	if err != nil {
		return nil, nil, &config.FieldError{Field: field, Msg: err.Error()}
	}
	d.stores.Lock()
	defer d.stores.Unlock()
	if s, ok := d.stores.m[key]; ok {
		s.refs++
		return s.store, d.releaseStore(key), nil
	}
	var st backend.Store
	switch sc.Type {
	case "dir":
		st, err = dir.Open(ctx, cfg.ResolvePath(sc.Path), nil)
	case "mem":
		st = bmem.New(nil)
	case "rados":
		st, err = openRADOS(ctx, sc.Ceph, d.log)
	case "s3":
		st, err = openS3(ctx, sc.S3, d.log)
	default:
		err = fmt.Errorf("unknown store type %q", sc.Type)
	}
	if err != nil {
		return nil, nil, &config.FieldError{Field: field, Msg: err.Error()}
	}
	d.stores.m[key] = &sharedStore{store: st, refs: 1}
	return st, d.releaseStore(key), nil
}

// releaseStore returns the release function of one reference to a shared
// store; the last release closes it.
func (d *Daemon) releaseStore(key string) func() {
	return func() {
		d.stores.Lock()
		defer d.stores.Unlock()
		s := d.stores.m[key]
		if s == nil {
			return
		}
		if s.refs--; s.refs == 0 {
			s.store.Close()
			delete(d.stores.m, key)
		}
	}
}

func storeKey(cfg *config.Config, sc *config.Store) (string, error) {
	switch sc.Type {
	case "dir":
		abs, err := filepath.Abs(cfg.ResolvePath(sc.Path))
		return "dir:" + abs, err
	case "mem":
		return fmt.Sprintf("mem:%p", sc), nil
	case "rados":
		return "rados:" + sc.Ceph.MonHost + sc.Ceph.ConfFile + "/" + sc.Ceph.Pool + "/" + sc.Ceph.Namespace, nil
	case "s3":
		return "s3:" + sc.S3.Endpoint + "/" + sc.S3.Bucket + "/" + sc.S3.Prefix, nil
	}
	return "", fmt.Errorf("unknown store type %q", sc.Type)
}

// openVolumeLocked opens a blockmap volume, creating it when missing.
func (d *Daemon) openVolume(ctx context.Context, cfg *config.Config, lc config.LUN, field string) (*openedBackend, error) {
	b := lc.Backend
	store, release, err := d.store(ctx, cfg, b.Store, field+".store")
	if err != nil {
		return nil, err
	}
	vs, err := d.cacheHook(ctx, cfg, lc, store, release, field) // backends_s3.go
	if err != nil {
		return nil, err
	}
	store, release = vs.store, vs.release
	opts := &blockmap.Options{Logger: d.log.With("volume", b.Volume)}
	if b.SegmentSize != 0 {
		opts.SegmentSize = int64(b.SegmentSize)
	}
	if b.MapCacheSize != 0 {
		opts.CacheBytes = int64(b.MapCacheSize)
	}
	vol, err := blockmap.Open(ctx, store, b.Volume, opts)
	if errors.Is(err, blockmap.ErrNotFound) {
		if lc.Size == 0 {
			release()
			return nil, &config.FieldError{Field: field[:len(field)-len(".backend")] + ".size", Msg: "required to create volume " + b.Volume}
		}
		vol, err = blockmap.Create(ctx, store, b.Volume, int64(lc.Size), opts)
	}
	if err != nil {
		release()
		return nil, &config.FieldError{Field: field + ".volume", Msg: err.Error()}
	}
	if err := growTo(vol, int64(lc.Size)); err != nil {
		vol.Close()
		release()
		return nil, &config.FieldError{Field: field[:len(field)-len(".backend")] + ".size", Msg: err.Error()}
	}
	return vs.opened(vol, backendKey(cfg, lc)), nil
}

// backendKey identifies a LUN's backing across restarts without opening it
// (identity.json).
func backendKey(cfg *config.Config, lc config.LUN) string {
	b := lc.Backend
	switch b.Type {
	case "file":
		abs, err := filepath.Abs(cfg.ResolvePath(b.Path))
		if err != nil {
			abs = cfg.ResolvePath(b.Path)
		}
		return "file:" + abs
	case "blockmap":
		key, _ := storeKey(cfg, b.Store)
		return "volume:" + key + "/" + b.Volume
	case "rbd":
		ns := ""
		if b.Ceph != nil {
			ns = b.Ceph.Pool + "/" + b.Ceph.Namespace
		}
		return "rbd:" + ns + "/" + b.Image
	}
	return b.Type
}
