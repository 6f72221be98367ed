package blockmap

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockmap/format"
)

var errShutdown = errors.New("blockmap: volume shutting down")

// Volume is a thin, log-structured block device on a backend.Store: the
// blockdev.Device a LUN serves. See the package documentation for the
// design and docs/FORMAT.md for the layout.
//
// All methods may be called concurrently.
type Volume struct {
	store backend.Store
	ow    backend.Overwriter // nil when the store cannot overwrite
	name  string
	snap  string // non-empty: a read-only view of this snapshot
	sb    *format.Superblock
	opts  Options
	log   *slog.Logger

	bs        uint32
	leafShift uint8
	fanShift  uint8
	segSize   int
	readOnly  bool

	// layers[i] is the object prefix (volume name) and ID of layer i.
	layerNames []string
	segNames   [1024]atomic.Pointer[segName]  // segObject's recent names
	leafMemo   [4096]atomic.Pointer[leafMemo] // leaf's recent finds
	memoBytes  atomic.Int64                   // leaf pages leafMemo holds
	memoBudget int64                          // memoBytes' bound
	layerIDs   [][16]byte

	cache    *Cache
	ownCache bool

	// ckptMu serializes checkpoints and the operations that must not
	// interleave with one (snapshot, resize, snapshot deletion, GC's
	// decisions about pages).
	ckptMu sync.Mutex
	// flushMu serializes data-stream flushes (group commit).
	flushMu sync.Mutex
	// gcMu serializes garbage-collection passes.
	gcMu sync.Mutex
	// reclaimMu serializes deletions of unreferenced objects.
	reclaimMu sync.Mutex

	mu struct {
		sync.RWMutex
		closed    bool
		bgStopped bool
		sizeBytes int64

		active  *delta
		frozen  []*delta // oldest first; being merged by a checkpoint
		base    baseTree
		baseGen uint64
		view    *view
		retired []*view

		data, gc   *segWriter
		mem        map[uint64]*segWriter // segments whose bytes are in memory
		sealQ      []*segWriter
		sealing    int
		dirtyBytes int64

		nextSeq   uint64
		replaySeq uint64
		gen       uint64
		ck        format.Checkpoint // the committed root, without its usage rows
		oldCkpts  []uint64
		segs      map[uint64]*segMeta
		snaps     map[string]*snapInfo
		forced    map[nodeKey]bool

		ioErr        error
		changed      chan struct{}
		journalBytes int64
		liveTotal    int64 // sum of segs' live bytes
		firstChange  time.Time

		lifetimeGuest   int64 // persisted counters, as of the last checkpoint + since
		lifetimeBackend int64
	}

	stats   counters
	limiter *rate.Limiter
	bufs    *bufPool
	// resolvedPool recycles read resolutions: a read allocates nothing
	// of ours.
	resolvedPool sync.Pool
	// memMin is the lowest seq in mu.mem (MaxUint64 when it is empty),
	// stored under mu. Segments enter mu.mem with a seq above every
	// existing one, before anything can reference them, and leave it once
	// durable, so a resolved piece below memMin reads from the store and
	// resolve skips the lock (see resolve).
	memMin atomic.Uint64

	bg struct {
		ctx    context.Context
		cancel context.CancelFunc
		wg     sync.WaitGroup
		kick   chan struct{} // wakes the checkpointer
		gcKick chan struct{}
	}
}

var (
	_ blockdev.Device             = (*Volume)(nil)
	_ blockdev.Unmapper           = (*Volume)(nil)
	_ blockdev.ZeroWriter         = (*Volume)(nil)
	_ blockdev.AllocationStatuser = (*Volume)(nil)
	_ blockdev.Resizer            = (*Volume)(nil)
	_ blockdev.CompareAndWriter   = (*Volume)(nil)
	_ blockdev.CopyRanger         = (*Volume)(nil)
	_ blockdev.HealthReporter     = (*Volume)(nil)
)

// segMeta is what the volume knows about one of its own segments.
type segMeta struct {
	live  int64 // bytes the committed map references (data and pages)
	size  int64 // object size, when known
	flags uint8 // format.Usage*
	pins  int32 // snapshots whose map references it
	kind  format.RecordKind
	open  bool // still being built or written (in v.mu.mem)
}

// snapInfo is a snapshot known to the volume.
type snapInfo struct {
	name      string
	created   time.Time
	gen       uint64
	sizeBytes int64
}

// nodeKey names a tree node.
type nodeKey struct {
	level uint8
	index uint64
}

// view is a generation of the volume's map as readers see it. Segments
// that a checkpoint leaves unreferenced are deleted only after every
// reader that could have seen them (holding an older view) is done.
type view struct {
	refs    atomic.Int64
	retired atomic.Bool
	once    sync.Once
	done    chan struct{}
}

func newView() *view { return &view{done: make(chan struct{})} }

func (w *view) release() {
	if w.refs.Add(-1) == 0 && w.retired.Load() {
		w.once.Do(func() { close(w.done) })
	}
}

func (w *view) retire() {
	w.retired.Store(true)
	if w.refs.Load() == 0 {
		w.once.Do(func() { close(w.done) })
	}
}

func newID() ([16]byte, error) {
	var id [16]byte
	_, err := rand.Read(id[:])
	return id, err
}

// leafShiftFor derives the leaf shift from the block size: a leaf maps
// LeafBytes of the volume.
func leafShiftFor(blockSize int) uint8 {
	s := uint8(0)
	for (blockSize << s) < LeafBytes {
		s++
	}
	return s
}

// Create makes a new, empty volume of sizeBytes named name in store and
// opens it. The name must be free: a leftover of a crashed creation or
// deletion (objects without a superblock) is cleaned up first.
func Create(ctx context.Context, store backend.Store, name string, sizeBytes int64, opts *Options) (*Volume, error) {
	if err := format.ValidName(name); err != nil {
		return nil, err
	}
	o := opts.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.ReadOnly {
		return nil, fmt.Errorf("blockmap: create %s: %w", name, blockdev.ErrReadOnly)
	}
	if sizeBytes < 0 || sizeBytes%int64(o.LogicalBlockSize) != 0 || uint64(sizeBytes)/uint64(o.LogicalBlockSize) > format.MaxLBA {
		return nil, fmt.Errorf("blockmap: create %s: size %d: %w", name, sizeBytes, blockdev.ErrUnaligned)
	}
	if err := prepareName(ctx, store, name); err != nil {
		return nil, err
	}
	id, err := newID()
	if err != nil {
		return nil, err
	}
	segSize := o.SegmentSize
	if segSize == 0 {
		segSize = DefaultSegmentSize
	}
	sb := &format.Superblock{
		ID: id, CreatedUnixNano: time.Now().UnixNano(), Name: name,
		BlockSize: uint32(o.LogicalBlockSize), PhysicalBlockSize: uint32(o.PhysicalBlockSize),
		SegmentSize: uint32(segSize), LeafShift: leafShiftFor(o.LogicalBlockSize), FanoutShift: DefaultFanoutShift,
	}
	if err := sb.Validate(); err != nil {
		return nil, err
	}
	ck := &format.Checkpoint{ID: id, Gen: 1, SizeBytes: uint64(sizeBytes), Height: heightFor(sb, uint64(sizeBytes))}
	if err := createObjects(ctx, store, sb, ck); err != nil {
		return nil, err
	}
	return Open(ctx, store, name, opts)
}

// prepareName fails with ErrExists if a volume of that name exists, and
// deletes leftovers of an incomplete creation or deletion.
func prepareName(ctx context.Context, store backend.Store, name string) error {
	if _, err := store.Stat(ctx, format.SuperblockName(name)); err == nil {
		return fmt.Errorf("blockmap: volume %s: %w", name, ErrExists)
	} else if !errors.Is(err, backend.ErrNotFound) {
		return err
	}
	return deletePrefix(ctx, store, name+"/")
}

// createObjects writes the first checkpoint, then the superblock: the
// superblock's existence is what makes the volume exist.
func createObjects(ctx context.Context, store backend.Store, sb *format.Superblock, ck *format.Checkpoint) error {
	if err := store.Put(ctx, format.CheckpointName(sb.Name, ck.Gen), format.AppendCheckpoint(nil, ck)); err != nil {
		return fmt.Errorf("blockmap: create %s: %w", sb.Name, err)
	}
	if err := store.Put(ctx, format.SuperblockName(sb.Name), format.AppendSuperblock(nil, sb)); err != nil {
		return fmt.Errorf("blockmap: create %s: %w", sb.Name, err)
	}
	return nil
}

// deletePrefix deletes every object under prefix.
func deletePrefix(ctx context.Context, store backend.Store, prefix string) error {
	var names []string
	err := store.List(ctx, prefix, func(oi backend.ObjectInfo) error {
		names = append(names, oi.Name)
		return nil
	})
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := store.Delete(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// heightFor is the number of interior levels a tree over size needs.
func heightFor(sb *format.Superblock, sizeBytes uint64) uint8 {
	blocks := sizeBytes / uint64(sb.BlockSize)
	leaves := (blocks + 1<<sb.LeafShift - 1) >> sb.LeafShift
	h := uint8(1)
	for h < format.MaxHeight && uint64(sb.FanoutShift)*uint64(h) < 64 && leaves > 1<<(uint64(sb.FanoutShift)*uint64(h)) {
		h++
	}
	return h
}

// readObject reads a whole (small) object, refusing anything over limit.
func readObject(ctx context.Context, store backend.Store, name string, limit int64) ([]byte, error) {
	oi, err := store.Stat(ctx, name)
	if err != nil {
		return nil, err
	}
	if oi.Size > limit || oi.Size < 0 {
		return nil, corruptf(name, -1, "object of %d bytes exceeds the limit of %d", oi.Size, limit)
	}
	b := make([]byte, oi.Size)
	n, err := store.ReadAt(ctx, name, b, 0)
	if err != nil && n < len(b) {
		return nil, err
	}
	return b, nil
}

// readSuperblock loads a volume's superblock.
func readSuperblock(ctx context.Context, store backend.Store, name string) (*format.Superblock, error) {
	if err := format.ValidName(name); err != nil {
		return nil, err
	}
	b, err := readObject(ctx, store, format.SuperblockName(name), format.MaxSuperblockLen)
	if errors.Is(err, backend.ErrNotFound) {
		return nil, fmt.Errorf("blockmap: volume %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("blockmap: volume %s: %w", name, err)
	}
	sb, err := format.DecodeSuperblock(b)
	if err != nil {
		return nil, objErr(format.SuperblockName(name), -1, err)
	}
	if sb.Name != name {
		return nil, corruptf(format.SuperblockName(name), -1, "superblock names volume %q", sb.Name)
	}
	return sb, nil
}

// Open opens an existing volume: it loads the newest checkpoint, the
// snapshots, and replays the segments written after the checkpoint.
func Open(ctx context.Context, store backend.Store, name string, opts *Options) (*Volume, error) {
	return open(ctx, store, name, "", opts)
}

// OpenSnapshot opens snapshot snap of volume name read-only.
func OpenSnapshot(ctx context.Context, store backend.Store, name, snap string, opts *Options) (*Volume, error) {
	if err := format.ValidName(snap); err != nil {
		return nil, err
	}
	o := Options{}
	if opts != nil {
		o = *opts
	}
	o.ReadOnly = true
	return open(ctx, store, name, snap, &o)
}

func open(ctx context.Context, store backend.Store, name, snap string, opts *Options) (*Volume, error) {
	o := opts.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	sb, err := readSuperblock(ctx, store, name)
	if err != nil {
		return nil, err
	}
	v := &Volume{
		store: store, name: name, snap: snap, sb: sb, opts: o, log: o.Logger,
		bs: sb.BlockSize, leafShift: sb.LeafShift, fanShift: sb.FanoutShift,
		segSize: int(sb.SegmentSize), readOnly: o.ReadOnly,
	}
	if o.SegmentSize != 0 {
		v.segSize = int(o.SegmentSize)
	}
	if ow, ok := store.(backend.Overwriter); ok {
		v.ow = ow
	}
	v.layerNames = append(v.layerNames, name)
	v.layerIDs = append(v.layerIDs, sb.ID)
	for _, a := range sb.Ancestry {
		v.layerNames = append(v.layerNames, a.Volume)
		v.layerIDs = append(v.layerIDs, a.ID)
	}
	if o.Cache != nil {
		v.cache = o.Cache
	} else {
		if v.cache, err = NewCache(o.CacheBytes); err != nil {
			return nil, err
		}
		v.ownCache = true
	}
	v.memoBudget = min(maxMemoBytes, v.cache.MaxBytes()/16)
	v.mu.mem = make(map[uint64]*segWriter)
	v.memMin.Store(math.MaxUint64)
	v.mu.segs = make(map[uint64]*segMeta)
	v.mu.snaps = make(map[string]*snapInfo)
	v.mu.forced = make(map[nodeKey]bool)
	v.mu.changed = make(chan struct{})
	v.mu.view = newView()
	v.mu.active = newDelta(v.leafShift, v.bs)
	// Keep enough free buffers for the segments usually in flight.
	v.bufs = newBufPool(v.segSize, int(min(8, max(2, o.MaxDirtyBytes/int64(v.segSize)/2))))
	v.limiter = rate.NewLimiter(rate.Limit(o.GCRateBytes), int(min(o.GCRateBytes, 64<<20)))

	if err := v.load(ctx); err != nil {
		v.closeCache()
		return nil, err
	}
	if !v.readOnly {
		v.startBackground()
	}
	v.log.Debug("blockmap: opened", "volume", name, "snapshot", snap, "gen", v.mu.gen,
		"size", v.mu.sizeBytes, "segments", len(v.mu.segs), "snapshots", len(v.mu.snaps))
	return v, nil
}

func (v *Volume) closeCache() {
	if v.ownCache {
		v.cache.Close()
	}
}

func (v *Volume) startBackground() {
	v.bg.ctx, v.bg.cancel = context.WithCancel(context.Background())
	v.bg.kick = make(chan struct{}, 1)
	v.bg.gcKick = make(chan struct{}, 1)
	// Sealing is latency-bound (a durable write per segment): overlap a few.
	const sealers = 4
	for range sealers {
		v.bg.wg.Add(1)
		go v.sealer(v.bg.ctx)
	}
	v.bg.wg.Add(1)
	go v.checkpointer(v.bg.ctx)
	if !v.opts.DisableGC && !v.opts.DisableBackground {
		v.bg.wg.Add(1)
		go v.collector(v.bg.ctx)
	}
}

// Name is the volume's name.
func (v *Volume) Name() string { return v.name }

// Info implements blockdev.Device.
func (v *Volume) Info() blockdev.Info {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.infoLocked()
}

func (v *Volume) infoLocked() blockdev.Info {
	return blockdev.Info{
		SizeBytes:         v.mu.sizeBytes,
		LogicalBlockSize:  int(v.bs),
		PhysicalBlockSize: int(v.sb.PhysicalBlockSize),
		Thin:              true,
		ReadOnly:          v.readOnly,
	}
}

// Health implements blockdev.HealthReporter: Unavailable while writes to
// the store are failing.
func (v *Volume) Health() blockdev.Health {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.mu.ioErr != nil {
		return blockdev.Unavailable
	}
	return blockdev.Healthy
}

// checkLocked validates a request.
func (v *Volume) checkLocked(ctx context.Context, off, length int64, write bool) error {
	if v.mu.closed {
		return blockdev.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if write && v.readOnly {
		return blockdev.ErrReadOnly
	}
	return blockdev.CheckRange(v.infoLocked(), off, length)
}

// ReadAt implements blockdev.Device.
func (v *Volume) ReadAt(ctx context.Context, p []byte, off int64) error {
	bs := int64(v.bs)
	if off < 0 || off%bs != 0 || int64(len(p))%bs != 0 || len(p) == 0 {
		// Misaligned or empty: checkLocked's errors (or nothing).
		v.mu.RLock()
		err := v.checkLocked(ctx, off, int64(len(p)), false)
		v.mu.RUnlock()
		return err
	}
	r, err := v.resolveChecked(ctx, uint64(off/bs), uint64(int64(len(p))/bs), true)
	if err != nil {
		return err
	}
	defer r.release()
	if err := v.readPieces(ctx, r, p); err != nil {
		return err
	}
	v.stats.guestReadOps.Add(1)
	v.stats.guestReadBytes.Add(int64(len(p)))
	return nil
}

// WriteAt implements blockdev.Device.
func (v *Volume) WriteAt(ctx context.Context, p []byte, off int64, flags blockdev.WriteFlags) error {
	if err := v.mutate(ctx, off, int64(len(p)), int64(len(p)), func() {
		v.writeBlocksLocked(format.RecordData, format.EntryWrite, uint64(off)/uint64(v.bs), p, loc{}, v.mu.active.setData)
	}); err != nil {
		return err
	}
	v.stats.guestWriteOps.Add(1)
	v.stats.guestWriteBytes.Add(int64(len(p)))
	if flags&blockdev.FUA != 0 {
		return v.flushData(ctx)
	}
	return nil
}

// setData is delta.set for mapped runs (the signature writeBlocksLocked wants).
func (d *delta) setData(start, n uint64, l loc) { d.set(start, n, false, l) }

// mutate runs fn under the write lock after validating the request and
// waiting, without the lock, for room in memory (dirty data and map
// changes are bounded).
func (v *Volume) mutate(ctx context.Context, off, length, dataBytes int64, fn func()) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.checkLocked(ctx, off, length, true); err != nil {
		return err
	}
	if err := v.waitRoomLocked(ctx, dataBytes); err != nil {
		return err
	}
	// The size may have changed while waiting.
	if err := v.checkLocked(ctx, off, length, true); err != nil {
		return err
	}
	if length == 0 {
		return nil
	}
	fn()
	v.noteChangeLocked()
	return nil
}

// waitRoomLocked waits until dataBytes more dirty bytes and a few more
// map changes fit the bounds. While the store is failing it returns the
// failure (wrapping backend.ErrUnavailable) instead of waiting.
func (v *Volume) waitRoomLocked(ctx context.Context, dataBytes int64) error {
	for {
		deltaSize := v.mu.active.size()
		for _, f := range v.mu.frozen {
			deltaSize += f.size()
		}
		dirtyOK := v.mu.dirtyBytes == 0 || v.mu.dirtyBytes+dataBytes <= v.opts.MaxDirtyBytes
		deltaOK := deltaSize < v.opts.MaxDeltaExtents
		if dirtyOK && deltaOK {
			return nil
		}
		if !deltaOK {
			v.kickCheckpoint()
		}
		if !dirtyOK && len(v.mu.sealQ) == 0 && v.mu.sealing == 0 {
			// Only open segments hold dirty data: seal them so that the
			// sealer makes room.
			v.sealLocked(format.RecordData)
			v.sealLocked(format.RecordGC)
		}
		if err := v.mu.ioErr; err != nil {
			return fmt.Errorf("blockmap: %s: store failing: %w", v.name, err)
		}
		if v.mu.closed || v.mu.bgStopped {
			return blockdev.ErrClosed
		}
		if err := v.waitLocked(ctx); err != nil {
			return err
		}
		if v.mu.closed {
			return blockdev.ErrClosed
		}
	}
}

// noteChangeLocked records a change for the checkpoint triggers.
func (v *Volume) noteChangeLocked() {
	if v.mu.firstChange.IsZero() {
		v.mu.firstChange = time.Now()
	}
	// Overwritten segments are freed only by a checkpoint: take one when
	// the journal reaches a quarter of the live data (bounding the space
	// dead journal takes), or MaxJournalBytes (bounding replay).
	j := v.mu.journalBytes
	if v.mu.active.size() >= v.opts.MaxDeltaExtents/2 || j >= v.opts.MaxJournalBytes ||
		j >= max(4*int64(v.segSize), v.mu.liveTotal/4) {
		v.kickCheckpoint()
	}
}

func (v *Volume) kickCheckpoint() {
	if v.bg.kick == nil {
		return
	}
	select {
	case v.bg.kick <- struct{}{}:
	default:
	}
}

// Flush implements blockdev.Device.
func (v *Volume) Flush(ctx context.Context) error {
	v.mu.RLock()
	closed := v.mu.closed
	v.mu.RUnlock()
	if closed {
		return blockdev.ErrClosed
	}
	if err := ctx.Err(); err != nil || v.readOnly {
		return err
	}
	v.stats.flushes.Add(1)
	return v.flushData(ctx)
}

// Unmap implements blockdev.Unmapper.
func (v *Volume) Unmap(ctx context.Context, off, length int64) error {
	return v.unmap(ctx, off, length, 0)
}

// WriteZeroes implements blockdev.ZeroWriter. Zeroed ranges are always
// deallocated: a thin volume reads deallocated blocks as zeros.
func (v *Volume) WriteZeroes(ctx context.Context, off, length int64, _ bool, flags blockdev.WriteFlags) error {
	return v.unmap(ctx, off, length, flags)
}

func (v *Volume) unmap(ctx context.Context, off, length int64, flags blockdev.WriteFlags) error {
	if err := v.mutate(ctx, off, length, 0, func() {
		start, n := uint64(off)/uint64(v.bs), uint64(length)/uint64(v.bs)
		for done := uint64(0); done < n; {
			k := min(n-done, 1<<31)
			v.appendLocked(format.RecordData, format.Entry{Kind: format.EntryUnmap, Count: uint32(k), LBA: start + done}, nil)
			done += k
		}
		v.mu.active.set(start, n, true, loc{})
	}); err != nil {
		return err
	}
	v.stats.guestUnmapOps.Add(1)
	v.stats.guestUnmapBytes.Add(length)
	if flags&blockdev.FUA != 0 {
		return v.flushData(ctx)
	}
	return nil
}

// AllocationStatus implements blockdev.AllocationStatuser from the map:
// mapped blocks are Mapped, everything else Deallocated. It stops after
// 4096 extents.
func (v *Volume) AllocationStatus(ctx context.Context, off, length int64) ([]blockdev.Extent, error) {
	v.mu.RLock()
	if err := v.checkLocked(ctx, off, length, false); err != nil {
		v.mu.RUnlock()
		return nil, err
	}
	v.mu.RUnlock()
	if length == 0 {
		return nil, nil
	}
	const maxExtents = 4096
	bs := int64(v.bs)
	// Resolve in windows so that a huge range costs bounded memory.
	var out []blockdev.Extent
	for length > 0 && len(out) < maxExtents {
		win := min(length, 1<<30)
		r, err := v.resolve(ctx, uint64(off/bs), uint64(win/bs))
		if err != nil {
			return nil, err
		}
		for _, p := range r.pieces {
			state := blockdev.Deallocated
			if p.kind == pieceData {
				state = blockdev.Mapped
			}
			o, l := int64(p.start)*bs, int64(p.n)*bs
			if k := len(out) - 1; k >= 0 && out[k].State == state && out[k].Off+out[k].Len == o {
				out[k].Len += l
			} else if len(out) < maxExtents {
				out = append(out, blockdev.Extent{Off: o, Len: l, State: state})
			} else {
				break
			}
		}
		r.release()
		off, length = off+win, length-win
	}
	return out, nil
}

// Close implements blockdev.Device: it flushes, writes a final
// checkpoint and stops the background work. A volume whose store is
// unavailable returns the error and is closed anyway (unflushed writes
// are lost, as after a crash).
func (v *Volume) Close() error {
	v.mu.Lock()
	if v.mu.closed {
		v.mu.Unlock()
		return blockdev.ErrClosed
	}
	v.mu.closed = true
	v.signalLocked()
	v.mu.Unlock()

	var err error
	if !v.readOnly {
		// Stop the collector first; the checkpointer and sealers keep
		// running for the final flush and checkpoint.
		ctx, cancel := context.WithTimeout(context.Background(), 2*v.opts.StoreTimeout)
		err = v.flushData(ctx)
		if err == nil {
			err = v.checkpoint(ctx, false)
		}
		if err == nil {
			// Garbage left now is collected after the next open.
			if rerr := v.reclaim(ctx); rerr != nil {
				v.log.Warn("blockmap: deleting unreferenced objects at close failed", "volume", v.name, "err", rerr)
			}
		}
		cancel()
		v.bg.cancel()
		v.mu.Lock()
		v.mu.bgStopped = true
		v.signalLocked()
		v.mu.Unlock()
		v.bg.wg.Wait()
	}
	v.closeCache()
	if err != nil {
		return fmt.Errorf("blockmap: close %s: %w", v.name, err)
	}
	return nil
}

// abandon stops the volume like a crash would: background work ends, no
// flush, no checkpoint, nothing more is written. For tests.
func (v *Volume) abandon() {
	v.mu.Lock()
	if v.mu.closed {
		v.mu.Unlock()
		return
	}
	v.mu.closed = true
	v.mu.bgStopped = true
	v.signalLocked()
	v.mu.Unlock()
	if v.bg.cancel != nil {
		v.bg.cancel()
		v.bg.wg.Wait()
	}
	v.closeCache()
}
