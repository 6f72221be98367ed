package blockmap

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockmap/format"
)

// SnapshotInfo describes a snapshot.
type SnapshotInfo struct {
	Name      string
	Created   time.Time
	SizeBytes int64
	// Generation is the checkpoint generation the snapshot froze.
	Generation uint64
}

// Snapshot takes a read-only, point-in-time snapshot named name: every
// write that completed before the call is in it, none that started after.
// It costs one checkpoint; no data is copied.
func (v *Volume) Snapshot(ctx context.Context, name string) error {
	if err := format.ValidName(name); err != nil {
		return err
	}
	if v.readOnly {
		return fmt.Errorf("blockmap: snapshot %s@%s: %w", v.name, name, blockdev.ErrReadOnly)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	v.ckptMu.Lock()
	defer v.ckptMu.Unlock()
	v.mu.RLock()
	_, exists := v.mu.snaps[name]
	closed := v.mu.closed
	v.mu.RUnlock()
	if closed {
		return blockdev.ErrClosed
	}
	if exists {
		return fmt.Errorf("blockmap: snapshot %s@%s: %w", v.name, name, ErrExists)
	}
	if err := v.checkpointLocked(ctx, true, -1); err != nil {
		return err
	}
	// The committed checkpoint is the snapshot. ckptMu keeps it current
	// (and its segments undeleted) until the record is in place.
	v.mu.RLock()
	ck := v.mu.ck
	ck.Usage = v.usageRowsLocked(nil, ck.NextSeq)
	v.mu.RUnlock()
	sortUsage(ck.Usage)
	rec := &format.Snapshot{ID: v.sb.ID, CreatedUnixNano: time.Now().UnixNano(), Name: name, Checkpoint: ck}
	obj := format.SnapshotName(v.name, name)
	enc := format.AppendSnapshot(nil, rec)
	if err := v.store.Put(ctx, obj, enc); err != nil {
		return objErr(obj, -1, err)
	}
	v.stats.backendWriteOps.Add(1)
	v.stats.backendWriteBytes.Add(int64(len(enc)))
	v.mu.Lock()
	v.addSnapshotLocked(rec)
	v.mu.Unlock()
	return nil
}

// Snapshots lists the volume's snapshots by name.
func (v *Volume) Snapshots() []SnapshotInfo {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]SnapshotInfo, 0, len(v.mu.snaps))
	for _, s := range v.mu.snaps {
		out = append(out, SnapshotInfo{Name: s.name, Created: s.created, SizeBytes: s.sizeBytes, Generation: s.gen})
	}
	slices.SortFunc(out, func(a, b SnapshotInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// DeleteSnapshot deletes a snapshot and frees what only it referenced.
// A snapshot that has clones is refused with blockdev.ErrInUse (delete
// the clones first).
func (v *Volume) DeleteSnapshot(ctx context.Context, name string) error {
	if err := format.ValidName(name); err != nil {
		return err
	}
	if v.readOnly {
		return fmt.Errorf("blockmap: delete snapshot %s@%s: %w", v.name, name, blockdev.ErrReadOnly)
	}
	v.ckptMu.Lock()
	v.mu.RLock()
	_, ok := v.mu.snaps[name]
	v.mu.RUnlock()
	if !ok {
		v.ckptMu.Unlock()
		return fmt.Errorf("blockmap: snapshot %s@%s: %w", v.name, name, ErrNotFound)
	}
	if err := checkNoClones(ctx, v.store, v.name, name); err != nil {
		v.ckptMu.Unlock()
		return err
	}
	rec, err := readSnapshot(ctx, v.store, v.name, name)
	if err != nil {
		v.ckptMu.Unlock()
		return err
	}
	// Deleting the record is the commit point; what it alone referenced
	// is unpinned and reclaimed below (or at a later reclaim, or as
	// orphans at the next open, if we crash now).
	obj := format.SnapshotName(v.name, name)
	if err := v.store.Delete(ctx, obj); err != nil {
		v.ckptMu.Unlock()
		return objErr(obj, -1, err)
	}
	v.stats.backendDeletes.Add(1)
	v.mu.Lock()
	delete(v.mu.snaps, name)
	for _, u := range rec.Checkpoint.Usage {
		if u.LiveBytes == 0 {
			continue
		}
		if s := v.mu.segs[u.Seq]; s != nil && s.pins > 0 {
			s.pins--
		}
	}
	v.mu.Unlock()
	v.ckptMu.Unlock()
	return v.reclaim(ctx)
}

// checkNoClones fails with blockdev.ErrInUse if a live clone of vol's
// snapshot snap exists ("" means any snapshot). Stale markers (of clones
// that were deleted or never completed) are removed.
func checkNoClones(ctx context.Context, store backend.Store, vol, snap string) error {
	prefix := format.ClonePrefix(vol)
	var markers []string
	if err := store.List(ctx, prefix, func(oi backend.ObjectInfo) error {
		markers = append(markers, oi.Name)
		return nil
	}); err != nil {
		return err
	}
	for _, obj := range markers {
		b, err := readObject(ctx, store, obj, 1024)
		if errors.Is(err, backend.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		m, err := format.DecodeCloneMarker(b)
		if err != nil {
			return objErr(obj, -1, err)
		}
		sb, err := readSuperblock(ctx, store, m.Clone)
		switch {
		case errors.Is(err, ErrNotFound):
			// The clone is gone (or never finished): the marker is stale.
			if err := store.Delete(ctx, obj); err != nil {
				return err
			}
			continue
		case err != nil:
			return err
		}
		live := sb.ID == m.CloneID && len(sb.Ancestry) > 0 && sb.Ancestry[0].Volume == vol
		if !live {
			if err := store.Delete(ctx, obj); err != nil {
				return err
			}
			continue
		}
		if snap == "" || m.Snapshot == snap {
			return fmt.Errorf("blockmap: %s@%s has clone %s: %w", vol, m.Snapshot, m.Clone, blockdev.ErrInUse)
		}
	}
	return nil
}

// Clone creates volume dst, writable, from snapshot snap of volume src in
// the same store, and opens it. Nothing is copied: dst reads src's data
// through the snapshot until it overwrites it, and the snapshot cannot be
// deleted while dst exists.
func Clone(ctx context.Context, store backend.Store, src, snap, dst string, opts *Options) (*Volume, error) {
	if err := format.ValidName(dst); err != nil {
		return nil, err
	}
	o := opts.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	srcSB, err := readSuperblock(ctx, store, src)
	if err != nil {
		return nil, err
	}
	rec, err := readSnapshot(ctx, store, src, snap)
	if err != nil {
		return nil, err
	}
	if rec.ID != srcSB.ID {
		return nil, corruptf(format.SnapshotName(src, snap), -1, "snapshot of another volume")
	}
	if len(srcSB.Ancestry)+1 >= format.MaxLayers {
		return nil, fmt.Errorf("blockmap: clone of %s@%s: clone depth limit %d reached: %w", src, snap, format.MaxLayers-1, blockdev.ErrNotSupported)
	}
	if err := prepareName(ctx, store, dst); err != nil {
		return nil, err
	}
	id, err := newID()
	if err != nil {
		return nil, err
	}
	segSize := uint32(o.SegmentSize)
	if segSize == 0 {
		segSize = srcSB.SegmentSize
	}
	sb := &format.Superblock{
		ID: id, CreatedUnixNano: time.Now().UnixNano(), Name: dst,
		BlockSize: srcSB.BlockSize, PhysicalBlockSize: srcSB.PhysicalBlockSize, SegmentSize: segSize,
		LeafShift: srcSB.LeafShift, FanoutShift: srcSB.FanoutShift,
		Ancestry: append([]format.Ancestor{{Volume: src, Snapshot: snap, ID: srcSB.ID}}, srcSB.Ancestry...),
	}
	if err := sb.Validate(); err != nil {
		return nil, err
	}
	root := rec.Checkpoint.Root
	if !root.IsZero() {
		root.Layer++
	}
	ck := &format.Checkpoint{ID: id, Gen: 1, SizeBytes: rec.Checkpoint.SizeBytes, Height: rec.Checkpoint.Height, Root: root}
	// The marker goes first, so that the snapshot is protected before the
	// clone exists; a marker without its clone is stale and ignored.
	marker := format.AppendCloneMarker(nil, &format.CloneMarker{CloneID: id, Clone: dst, Snapshot: snap})
	if err := store.Put(ctx, format.CloneName(src, dst), marker); err != nil {
		return nil, err
	}
	if err := createObjects(ctx, store, sb, ck); err != nil {
		return nil, err
	}
	return Open(ctx, store, dst, opts)
}

// Delete deletes volume name and its snapshots. It is refused with
// blockdev.ErrInUse while a clone of one of its snapshots exists. The
// volume must not be open.
func Delete(ctx context.Context, store backend.Store, name string) error {
	sb, err := readSuperblock(ctx, store, name)
	if err != nil {
		return err
	}
	if err := checkNoClones(ctx, store, name, ""); err != nil {
		return err
	}
	// Without its superblock the volume no longer exists; the rest is
	// garbage that a crash may leave and Create cleans up.
	if err := store.Delete(ctx, format.SuperblockName(name)); err != nil {
		return err
	}
	if err := deletePrefix(ctx, store, name+"/"); err != nil {
		return err
	}
	if len(sb.Ancestry) > 0 {
		return store.Delete(ctx, format.CloneName(sb.Ancestry[0].Volume, name))
	}
	return nil
}

// List returns the names of the volumes in store, sorted. It walks every
// object name in the store.
func List(ctx context.Context, store backend.Store) ([]string, error) {
	var names []string
	err := store.List(ctx, "", func(oi backend.ObjectInfo) error {
		if vol, ok := strings.CutSuffix(oi.Name, "/super"); ok && format.ValidName(vol) == nil {
			names = append(names, vol)
		}
		return nil
	})
	return names, err
}

// VolumeInfo describes a volume for operators.
type VolumeInfo struct {
	Name              string
	ID                [16]byte
	SizeBytes         int64
	LogicalBlockSize  int
	PhysicalBlockSize int
	SegmentSize       int
	Created           time.Time
	// Origin is "volume@snapshot" for a clone, empty otherwise.
	Origin     string
	Generation uint64
	Snapshots  []SnapshotInfo
	// Snapshot is the snapshot name when this Volume is a snapshot view.
	Snapshot string
	ReadOnly bool
}

// Describe returns the volume's description.
func (v *Volume) Describe() VolumeInfo {
	vi := VolumeInfo{
		Name: v.name, ID: v.sb.ID, LogicalBlockSize: int(v.bs), PhysicalBlockSize: int(v.sb.PhysicalBlockSize),
		SegmentSize: v.segSize, Created: time.Unix(0, v.sb.CreatedUnixNano), Snapshot: v.snap, ReadOnly: v.readOnly,
	}
	if len(v.sb.Ancestry) > 0 {
		vi.Origin = v.sb.Ancestry[0].Volume + "@" + v.sb.Ancestry[0].Snapshot
	}
	vi.Snapshots = v.Snapshots()
	v.mu.RLock()
	vi.SizeBytes = v.mu.sizeBytes
	vi.Generation = v.mu.gen
	v.mu.RUnlock()
	return vi
}

// Resize implements blockdev.Resizer. Growing exposes deallocated
// blocks; shrinking is refused with blockdev.ErrInUse while mapped data
// lies beyond the new end (unmap it first). The new size is committed (a
// checkpoint) before Resize returns.
func (v *Volume) Resize(ctx context.Context, sizeBytes int64) error {
	if v.readOnly {
		return blockdev.ErrReadOnly
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if sizeBytes < 0 || sizeBytes%int64(v.bs) != 0 || uint64(sizeBytes)/uint64(v.bs) > format.MaxLBA {
		return fmt.Errorf("blockmap: resize %s to %d: %w", v.name, sizeBytes, blockdev.ErrUnaligned)
	}
	v.ckptMu.Lock()
	defer v.ckptMu.Unlock()
	v.mu.RLock()
	old, closed := v.mu.sizeBytes, v.mu.closed
	v.mu.RUnlock()
	if closed {
		return blockdev.ErrClosed
	}
	switch {
	case sizeBytes == old:
		return nil
	case sizeBytes > old:
		// Commit first: no write may land beyond the old end before the
		// new size is durable.
		return v.checkpointLocked(ctx, true, sizeBytes)
	}
	bs := uint64(v.bs)
	from, n := uint64(sizeBytes)/bs, uint64(old-sizeBytes)/bs
	r, err := v.resolve(ctx, from, n)
	if err != nil {
		return err
	}
	mapped := hasData(r.pieces)
	r.release()
	if mapped {
		return fmt.Errorf("blockmap: shrink %s to %d: data is mapped beyond the new end: %w", v.name, sizeBytes, blockdev.ErrInUse)
	}
	v.mu.Lock()
	// The base cannot change (ckptMu); writes since may have mapped more.
	if hasData(v.deltaResolveLocked(from, n)) {
		v.mu.Unlock()
		return fmt.Errorf("blockmap: shrink %s to %d: data is mapped beyond the new end: %w", v.name, sizeBytes, blockdev.ErrInUse)
	}
	v.mu.sizeBytes = sizeBytes
	v.mu.Unlock()
	if err := v.checkpointLocked(ctx, true, sizeBytes); err != nil {
		v.mu.Lock()
		if v.mu.sizeBytes == sizeBytes {
			v.mu.sizeBytes = old
		}
		v.mu.Unlock()
		return err
	}
	return nil
}

func hasData(pieces []piece) bool {
	for _, p := range pieces {
		if p.kind == pieceData {
			return true
		}
	}
	return false
}
