package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/dir"
	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/file"
	"github.com/lunway/lunway/blockmap"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
)

// Offline access to a LUN's backing, for the tools that work on a stopped
// daemon's storage (lunway import, export and volume). It reuses the
// openers `lunway serve` uses, so a LUN opens offline exactly as the
// daemon would open it; the stores' and files' own locks (flock) make an
// offline open fail with blockdev.ErrInUse while a daemon has it open.

// OfflineOptions configure OpenLUNOffline. Nil means defaults.
type OfflineOptions struct {
	// ReadOnly opens the backing read-only (file LUNs with a shared lock,
	// blockmap volumes without writing to the store).
	ReadOnly bool
	// Create creates a missing backing (file or volume) of the LUN's
	// configured size, as `lunway serve` does. Without it a missing
	// backing is an error wrapping os.ErrNotExist or blockmap.ErrNotFound.
	Create bool
	// Logger receives the backends' logs; nil discards them.
	Logger *slog.Logger
}

// OfflineLUN is a LUN's backing opened without serving it.
type OfflineLUN struct {
	// Device is the LUN's storage.
	Device blockdev.Device
	// Type is the backend type: file, blockmap or rbd.
	Type string
	// Key identifies the backing ("file:/abs/path", "volume:dir:/abs/store/vol0").
	Key string
	// Created reports that this open created the backing: it reads as
	// zeros everywhere.
	Created bool
	release func()
}

// Close closes the Device and what was opened for it.
func (l *OfflineLUN) Close() error {
	err := l.Device.Close()
	if l.release != nil {
		l.release()
	}
	return err
}

var (
	// ErrNoSuchLUN: the configuration has no such target or LUN.
	ErrNoSuchLUN = errors.New("not in the configuration")
	// ErrNotVolume: the LUN is not a blockmap volume.
	ErrNotVolume = errors.New("not a blockmap volume")
)

// FindLUN returns the configuration of LUN lun of target iqn (errors wrap
// ErrNoSuchLUN).
func FindLUN(cfg *config.Config, iqn string, lun uint64) (config.LUN, string, error) {
	for ti, t := range cfg.Targets {
		if t.Name != iqn {
			continue
		}
		for li, l := range t.LUNs {
			if l.LUN == lun {
				return l, fmt.Sprintf("targets[%d].luns[%d].backend", ti, li), nil
			}
		}
		return config.LUN{}, "", fmt.Errorf("target %s: LUN %d: %w", iqn, lun, ErrNoSuchLUN)
	}
	return config.LUN{}, "", fmt.Errorf("target %s: %w", iqn, ErrNoSuchLUN)
}

// offlineDaemon is the part of a Daemon the backend openers use.
func offlineDaemon(ctx context.Context, log *slog.Logger) *Daemon {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{log: log, ctx: ctx}
	d.stores.m = map[string]*sharedStore{}
	return d
}

// OpenLUNOffline opens the backing of LUN lun of target iqn in cfg (a
// validated configuration with defaults applied) without serving it.
func OpenLUNOffline(ctx context.Context, cfg *config.Config, iqn string, lun uint64, opts *OfflineOptions) (*OfflineLUN, error) {
	var o OfflineOptions
	if opts != nil {
		o = *opts
	}
	lc, field, err := FindLUN(cfg, iqn, lun)
	if err != nil {
		return nil, err
	}
	d := offlineDaemon(ctx, o.Logger)
	key := backendKey(cfg, lc)
	switch lc.Backend.Type {
	case "file":
		// file.Open directly rather than openFile: its errors keep their
		// chain (blockdev.ErrInUse while the daemon holds the file).
		path, err := filepath.Abs(cfg.ResolvePath(lc.Backend.Path))
		if err != nil {
			return nil, err
		}
		ro := o.ReadOnly || lc.ReadOnly
		_, serr := os.Stat(path)
		dev, err := file.Open(ctx, path, &file.Options{Create: o.Create && !ro, SizeBytes: int64(lc.Size), Direct: lc.Backend.Direct, ReadOnly: ro})
		if err != nil {
			return nil, fmt.Errorf("LUN %d of %s: %w", lun, iqn, err)
		}
		if !ro {
			if err := growTo(dev, int64(lc.Size)); err != nil {
				dev.Close()
				return nil, fmt.Errorf("LUN %d of %s: %s: %w", lun, iqn, path, err)
			}
		}
		return &OfflineLUN{Device: dev, Type: "file", Key: key, Created: errors.Is(serr, os.ErrNotExist)}, nil
	case "blockmap":
		st, name, release, err := openLUNStore(ctx, d, cfg, lc, field)
		if err != nil {
			return nil, err
		}
		bo := &blockmap.Options{Logger: d.log.With("volume", name), ReadOnly: o.ReadOnly}
		if lc.Backend.MapCacheSize != 0 {
			bo.CacheBytes = int64(lc.Backend.MapCacheSize)
		}
		vol, err := blockmap.Open(ctx, st, name, bo)
		created := false
		if errors.Is(err, blockmap.ErrNotFound) && o.Create && !o.ReadOnly && lc.Size != 0 {
			if lc.Backend.SegmentSize != 0 {
				bo.SegmentSize = int64(lc.Backend.SegmentSize)
			}
			vol, err = blockmap.Create(ctx, st, name, int64(lc.Size), bo)
			created = err == nil
		}
		if err != nil {
			release()
			return nil, fmt.Errorf("%s.volume: %w", field, err)
		}
		if !o.ReadOnly {
			if err := growTo(vol, int64(lc.Size)); err != nil {
				vol.Close()
				release()
				return nil, fmt.Errorf("%s.volume: %w", field, err)
			}
		}
		return &OfflineLUN{Device: vol, Type: "blockmap", Key: key, Created: created, release: release}, nil
	case "rbd":
		if o.ReadOnly {
			lc.ReadOnly = true
		}
		ob, err := openRBD(ctx, cfg, lc, field, d.log)
		if err != nil {
			return nil, err
		}
		return &OfflineLUN{Device: ob.dev, Type: "rbd", Key: key, release: ob.release}, nil
	}
	return nil, &config.FieldError{Field: field + ".type", Msg: fmt.Sprintf("unknown backend type %q", lc.Backend.Type)}
}

// OpenLUNStoreOffline opens the object store of a blockmap LUN and
// returns it with the LUN's volume name, for the volume tools (snapshot,
// clone, check...). release closes the store.
func OpenLUNStoreOffline(ctx context.Context, cfg *config.Config, iqn string, lun uint64, log *slog.Logger) (backend.Store, string, func(), error) {
	lc, field, err := FindLUN(cfg, iqn, lun)
	if err != nil {
		return nil, "", nil, err
	}
	if lc.Backend.Type != "blockmap" {
		return nil, "", nil, fmt.Errorf("LUN %d of %s is a %s LUN, not a blockmap volume: %w", lun, iqn, lc.Backend.Type, ErrNotVolume)
	}
	return openLUNStore(ctx, offlineDaemon(ctx, log), cfg, lc, field)
}

func openLUNStore(ctx context.Context, d *Daemon, cfg *config.Config, lc config.LUN, field string) (backend.Store, string, func(), error) {
	sc := lc.Backend.Store
	if sc == nil {
		return nil, "", nil, &config.FieldError{Field: field + ".store", Msg: "missing"}
	}
	if sc.Type == "dir" {
		// dir.Open directly: its error keeps blockdev.ErrInUse while the
		// daemon holds the directory.
		st, err := dir.Open(ctx, cfg.ResolvePath(sc.Path), nil)
		if err != nil {
			return nil, "", nil, fmt.Errorf("%s: %w", field+".store", err)
		}
		return st, lc.Backend.Volume, func() { st.Close() }, nil
	}
	st, release, err := d.store(ctx, cfg, sc, field+".store")
	if err != nil {
		return nil, "", nil, err
	}
	return st, lc.Backend.Volume, release, nil
}
