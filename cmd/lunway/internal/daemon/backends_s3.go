package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/s3"
	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockmap"
	"github.com/lunway/lunway/blockmap/format"
	"github.com/lunway/lunway/cache"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
)

// cacheCloseDrain is how long closing a LUN's cache waits for pending
// uploads (a clean shutdown usually leaves the store complete; what is
// left resumes at the next start).
const cacheCloseDrain = 10 * time.Second

// openS3 opens an S3 store. An unreachable service is not an error here:
// the volume hook checks the bucket and reports the LUN as unavailable,
// so that it is served busy and retried instead of failing the start.
func openS3(ctx context.Context, c *config.S3, log *slog.Logger) (backend.Store, error) {
	return s3.Open(ctx, &s3.Options{
		Endpoint:        c.Endpoint,
		Region:          c.Region,
		Bucket:          c.Bucket,
		Prefix:          c.Prefix,
		PathStyle:       c.PathStyle,
		AccessKey:       c.AccessKey,
		SecretKey:       c.SecretKey,
		CredentialsFile: c.CredentialsFile,
		Profile:         c.Profile,
		CreateBucket:    c.CreateBucket,
		MaxConcurrency:  c.MaxRequests,
		OpenUnreachable: true,
		Logger:          log.With("store", "s3", "bucket", c.Bucket),
	})
}

// volumeStore is what the cache hook makes of a blockmap LUN's store:
// the store to open the volume on (the cache, when the LUN has one), the
// function that releases it, and the cache.
type volumeStore struct {
	store   backend.Store
	release func()
	cache   *cache.Cache
}

// cacheHook runs between opening a blockmap LUN's shared store and its
// volume (openVolume). It checks that a remote store answers, so that an
// outage at start makes the LUN pending (an error wrapping
// blockdev.ErrUnavailable) rather than misconfigured, and puts the LUN's
// cache (backend.cache) in front of the store. It takes over release: on
// error it has released the store.
func (d *Daemon) cacheHook(ctx context.Context, cfg *config.Config, lc config.LUN, st backend.Store, release func(), field string) (*volumeStore, error) {
	b := lc.Backend
	if err := probeStore(ctx, st, b.Volume); err != nil {
		release()
		if errors.Is(err, blockdev.ErrUnavailable) {
			return nil, &storeUnavailableError{field: field + ".store", err: err}
		}
		return nil, &config.FieldError{Field: field + ".store", Msg: err.Error()}
	}
	if b.Cache == nil {
		return &volumeStore{store: st, release: release}, nil
	}
	cc := b.Cache
	dir, err := filepath.Abs(cfg.ResolvePath(cc.Path))
	if err != nil {
		release()
		return nil, &config.FieldError{Field: field + ".cache.path", Msg: err.Error()}
	}
	o := &cache.Options{
		Dir:           dir,
		LogBytes:      int64(cc.Size),
		ReadDiskBytes: int64(cc.ReadSize),
		ReadMemBytes:  int64(cc.MemReadSize),
		ReadTimeout:   time.Duration(cc.ReadTimeout),
		FullWait:      time.Duration(cc.FullWait),
		UploadHold:    time.Duration(cc.UploadHold),
		CloseDrain:    cacheCloseDrain,
		Logger:        d.log.With("volume", b.Volume, "cache", dir),
	}
	if err := o.Validate(); err != nil {
		release()
		return nil, &config.FieldError{Field: field + ".cache", Msg: err.Error()}
	}
	c, err := cache.Open(ctx, st, o)
	if err != nil {
		release()
		if errors.Is(err, blockdev.ErrInUse) {
			return nil, &config.FieldError{Field: field + ".cache.path", Msg: dir + " is used by another LUN or process"}
		}
		return nil, &config.FieldError{Field: field + ".cache.path", Msg: err.Error()}
	}
	return &volumeStore{store: c, cache: c, release: func() {
		if err := c.Close(); err != nil && !errors.Is(err, backend.ErrClosed) {
			d.log.Warn("closing a LUN's cache", "volume", b.Volume, "err", err)
		}
		release()
	}}, nil
}

// opened returns the LUN's backend: the volume, wrapped with its cache
// when it has one.
func (vs *volumeStore) opened(vol *blockmap.Volume, key string) *openedBackend {
	ob := &openedBackend{dev: vol, key: key, release: vs.release}
	if vs.cache != nil {
		ob.dev = &cachedVolume{Volume: vol, cache: vs.cache}
		ob.cacheStats = cacheMetrics(vs.cache)
	}
	return ob
}

// probeStore checks that a store answers: for S3, the bucket (created when
// configured); for any store, the volume's superblock (missing is fine).
func probeStore(ctx context.Context, st backend.Store, volume string) error {
	if s, ok := st.(*s3.Store); ok {
		if err := s.CheckBucket(ctx); err != nil {
			return err
		}
	}
	if _, err := st.Stat(ctx, format.SuperblockName(volume)); err != nil && !errors.Is(err, backend.ErrNotFound) {
		return err
	}
	return nil
}

// storeUnavailableError names the store field of a LUN whose store does
// not answer; it wraps blockdev.ErrUnavailable, so that the daemon serves
// the LUN as busy and retries.
type storeUnavailableError struct {
	field string
	err   error
}

func (e *storeUnavailableError) Error() string { return e.field + ": " + e.err.Error() }
func (e *storeUnavailableError) Unwrap() error { return e.err }

// cachedVolume is a blockmap volume over a local cache, served as one
// Device. It has the volume's capabilities (all of them, promoted), and
// reports the worse of the volume's health and the cache's: the volume
// alone cannot tell that its store is down while the cache absorbs its
// writes. The daemon wraps rather than teaching blockmap about caches, so
// that the volume stays unaware of what is below its Store.
type cachedVolume struct {
	*blockmap.Volume
	cache *cache.Cache
}

var (
	_ blockdev.Device             = (*cachedVolume)(nil)
	_ blockdev.Unmapper           = (*cachedVolume)(nil)
	_ blockdev.ZeroWriter         = (*cachedVolume)(nil)
	_ blockdev.AllocationStatuser = (*cachedVolume)(nil)
	_ blockdev.Resizer            = (*cachedVolume)(nil)
	_ blockdev.CompareAndWriter   = (*cachedVolume)(nil)
	_ blockdev.CopyRanger         = (*cachedVolume)(nil)
	_ blockdev.HealthReporter     = (*cachedVolume)(nil)
)

// Health implements blockdev.HealthReporter.
func (v *cachedVolume) Health() blockdev.Health {
	return max(v.Volume.Health(), v.cache.Health())
}

// CopyRange implements blockdev.CopyRanger, unwrapping a source that is
// also a cached volume (the volume copies between volumes by reference).
func (v *cachedVolume) CopyRange(ctx context.Context, src blockdev.Device, srcOff, dstOff, length int64) error {
	if s, ok := src.(*cachedVolume); ok {
		src = s.Volume
	}
	return v.Volume.CopyRange(ctx, src, srcOff, dstOff, length)
}

// Snapshot takes a snapshot and then waits (within ctx) until the cache
// has uploaded it, so that a clone made from the store finds it.
func (v *cachedVolume) Snapshot(ctx context.Context, name string) error {
	if err := v.Volume.Snapshot(ctx, name); err != nil {
		return err
	}
	if err := v.cache.Drain(ctx); err != nil {
		return fmt.Errorf("snapshot %s is taken but not yet in the store (it is uploaded when the store answers): %w", name, err)
	}
	return nil
}

// CacheStats returns the statistics of the LUN's cache.
func (v *cachedVolume) CacheStats() cache.Stats { return v.cache.Stats() }

// Cache returns the LUN's cache.
func (v *cachedVolume) Cache() *cache.Cache { return v.cache }
