package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockmap"
	"github.com/lunway/lunway/cmd/lunway/internal/api"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"github.com/lunway/lunway/target/iscsi"
)

// DropSession implements api.Backend.
func (d *Daemon) DropSession(ctx context.Context, id uint64) error {
	var who string
	for _, s := range d.srv.Sessions() {
		if s.ID == id {
			who = s.InitiatorName
		}
	}
	if err := d.srv.CloseSession(id); err != nil {
		if errors.Is(err, iscsi.ErrNoSuchSession) {
			return &api.Error{Field: "id", Err: fmt.Errorf("%w: no session %d", api.ErrNotFound, id)}
		}
		return err
	}
	d.audit.Info("session dropped by operator", "session", id, "initiator", who, "peer", api.PeerFromContext(ctx))
	return nil
}

// snapshotter is what snapshots need from a blockmap volume.
type snapshotter interface {
	Snapshot(ctx context.Context, name string) error
	Snapshots() []blockmap.SnapshotInfo
	DeleteSnapshot(ctx context.Context, name string) error
}

// volume returns the live blockmap volume of a LUN, with its
// configuration.
func (d *Daemon) volume(target string, n uint64) (snapshotter, config.LUN, error) {
	s := d.snap()
	lc, err := findLUNConfig(s.cfg, target, n)
	if err != nil {
		return nil, config.LUN{}, err
	}
	if lc.Backend.Type != "blockmap" {
		return nil, *lc, &api.Error{Field: "lun", Err: fmt.Errorf("%w: snapshots and clones are for blockmap LUNs; LUN %d of %s is a %s LUN",
			api.ErrNotSupported, n, target, lc.Backend.Type)}
	}
	l := s.lunOf(target, n)
	if l == nil || l.pending {
		return nil, *lc, &api.Error{Field: "lun", Err: fmt.Errorf("%w: the LUN's backend is not open yet", api.ErrUnavailable)}
	}
	v, ok := l.dev.(snapshotter)
	if !ok {
		return nil, *lc, &api.Error{Field: "lun", Err: fmt.Errorf("%w: the LUN's device has no snapshots", api.ErrNotSupported)}
	}
	return v, *lc, nil
}

// volumeErr maps blockmap errors to API errors naming field.
func volumeErr(err error, field string) error {
	var kind error
	switch {
	case errors.Is(err, blockmap.ErrNotFound):
		kind = api.ErrNotFound
	case errors.Is(err, blockmap.ErrExists):
		kind = api.ErrExists
	case errors.Is(err, blockdev.ErrInUse):
		kind = api.ErrInUse
	case errors.Is(err, blockmap.ErrInvalidName):
		kind = api.ErrInvalid
	case errors.Is(err, blockdev.ErrReadOnly), errors.Is(err, blockdev.ErrNotSupported):
		kind = api.ErrNotSupported
	case errors.Is(err, blockdev.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		kind = api.ErrUnavailable
	default:
		return err
	}
	return &api.Error{Field: field, Err: fmt.Errorf("%w: %v", kind, err)}
}

// Snapshots implements api.Backend.
func (d *Daemon) Snapshots(ctx context.Context, target string, n uint64) ([]api.Snapshot, error) {
	v, _, err := d.volume(target, n)
	if err != nil {
		return nil, err
	}
	var out []api.Snapshot
	for _, s := range v.Snapshots() {
		out = append(out, api.Snapshot{Name: s.Name, Created: s.Created, SizeBytes: s.SizeBytes, Generation: s.Generation})
	}
	return out, nil
}

// Snapshot implements api.Backend.
func (d *Daemon) Snapshot(ctx context.Context, target string, n uint64, name string) error {
	d.change.Lock()
	defer d.change.Unlock()
	v, _, err := d.volume(target, n)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(d.ctx, changeTimeout)
	defer cancel()
	if err := v.Snapshot(cctx, name); err != nil {
		return volumeErr(err, "name")
	}
	d.audit.Info("snapshot taken", "target", target, "lun", n, "snapshot", name, "peer", api.PeerFromContext(ctx))
	return nil
}

// DeleteSnapshot implements api.Backend.
func (d *Daemon) DeleteSnapshot(ctx context.Context, target string, n uint64, name string) error {
	d.change.Lock()
	defer d.change.Unlock()
	v, _, err := d.volume(target, n)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(d.ctx, changeTimeout)
	defer cancel()
	if err := v.DeleteSnapshot(cctx, name); err != nil {
		return volumeErr(err, "snapshot")
	}
	d.audit.Info("snapshot deleted", "target", target, "lun", n, "snapshot", name, "peer", api.PeerFromContext(ctx))
	return nil
}

// Clone implements api.Backend: the clone is created in the source's
// store; when req names a target and LUN, it is added there as a change
// (and deleted again if that change fails).
func (d *Daemon) Clone(ctx context.Context, target string, n uint64, req api.CloneRequest) error {
	d.change.Lock()
	defer d.change.Unlock()
	_, lc, err := d.volume(target, n)
	if err != nil {
		return err
	}
	d.mu.Lock()
	cfg := d.mu.cfg
	d.mu.Unlock()
	cctx, cancel := context.WithTimeout(d.ctx, changeTimeout)
	defer cancel()
	b := lc.Backend
	store, release, err := d.store(cctx, cfg, b.Store, "backend.store")
	if err != nil {
		return err
	}
	defer release()
	opts := &blockmap.Options{Logger: d.log.With("volume", req.Volume)}
	if b.SegmentSize != 0 {
		opts.SegmentSize = int64(b.SegmentSize)
	}
	vol, err := blockmap.Clone(cctx, store, b.Volume, req.Snapshot, req.Volume, opts)
	if err != nil {
		field := "volume"
		if errors.Is(err, blockmap.ErrNotFound) {
			field = "snapshot"
		}
		return volumeErr(err, field)
	}
	if err := vol.Close(); err != nil {
		return err
	}
	d.audit.Info("clone created", "volume", req.Volume, "origin", b.Volume+"@"+req.Snapshot, "peer", api.PeerFromContext(ctx))
	if req.LUN == nil {
		return nil
	}
	nb := config.Backend{Type: "blockmap", Store: b.Store, Volume: req.Volume, MapCacheSize: b.MapCacheSize, SegmentSize: b.SegmentSize}
	err = d.changeLocked(ctx, fmt.Sprintf("serve clone %s as LUN %d of %s", req.Volume, *req.LUN, req.Target), func(c *config.Config) error {
		for i := range c.Targets {
			t := &c.Targets[i]
			if !strings.EqualFold(t.Name, req.Target) {
				continue
			}
			for _, l := range t.LUNs {
				if l.LUN == *req.LUN {
					return &api.Error{Field: "lun", Err: fmt.Errorf("%w: target %s has LUN %d", api.ErrExists, req.Target, *req.LUN)}
				}
			}
			t.LUNs = append(t.LUNs, config.LUN{LUN: *req.LUN, Backend: nb})
			return nil
		}
		return &api.Error{Field: "target", Err: fmt.Errorf("%w: no target %s", api.ErrNotFound, req.Target)}
	}, changeOptions{})
	if err != nil {
		if derr := blockmap.Delete(cctx, store, req.Volume); derr != nil {
			d.log.Error("deleting a clone whose LUN could not be added", "volume", req.Volume, "err", derr)
		}
		return err
	}
	return nil
}
