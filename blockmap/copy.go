package blockmap

import (
	"bytes"
	"context"
	"fmt"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockmap/format"
)

// CompareAndWrite implements blockdev.CompareAndWriter atomically and
// without holding a lock across I/O: it reads and compares, then writes
// only if the range still maps to exactly what it read (every write goes
// to a new location, so an unchanged mapping means unchanged data);
// otherwise it starts over.
func (v *Volume) CompareAndWrite(ctx context.Context, compare, data []byte, off int64, flags blockdev.WriteFlags) error {
	if len(compare) != len(data) {
		return fmt.Errorf("%w: compare %d bytes, data %d bytes", blockdev.ErrUnaligned, len(compare), len(data))
	}
	v.mu.RLock()
	err := v.checkLocked(ctx, off, int64(len(data)), true)
	v.mu.RUnlock()
	if err != nil || len(data) == 0 {
		return err
	}
	bs := uint64(v.bs)
	start, n := uint64(off)/bs, uint64(len(data))/bs
	cur := make([]byte, len(data))
	for {
		r, err := v.resolve(ctx, start, n)
		if err != nil {
			return err
		}
		if err := v.readPieces(ctx, r, cur); err != nil {
			r.release()
			return err
		}
		if !bytes.Equal(cur, compare) {
			r.release()
			i := 0
			for cur[i] == compare[i] {
				i++
			}
			return &blockdev.MiscompareError{Offset: int64(i)}
		}
		wrote := false
		err = v.mutate(ctx, off, int64(len(data)), int64(len(data)), func() {
			now := v.deltaResolveLocked(start, n)
			if !samePieces(now, r.deltaPieces) || (hasGap(now) && v.mu.baseGen != r.gen) {
				return // changed underneath: compare again
			}
			v.writeBlocksLocked(format.RecordData, format.EntryWrite, start, data, loc{}, v.mu.active.setData)
			wrote = true
		})
		r.release()
		if err != nil {
			return err
		}
		if wrote {
			break
		}
	}
	v.stats.guestWriteOps.Add(1)
	v.stats.guestWriteBytes.Add(int64(len(data)))
	if flags&blockdev.FUA != 0 {
		return v.flushData(ctx)
	}
	return nil
}

func samePieces(a, b []piece) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// CopyRange implements blockdev.CopyRanger. From this volume or one of
// its snapshots (same store) it copies map entries, not data: the copy
// shares the source's segments. From any other Volume it copies the data
// in chunks. Other Devices get blockdev.ErrNotSupported.
func (v *Volume) CopyRange(ctx context.Context, src blockdev.Device, srcOff, dstOff, length int64) error {
	sv, ok := src.(*Volume)
	if !ok {
		return fmt.Errorf("blockmap: copy from %T: %w", src, blockdev.ErrNotSupported)
	}
	if err := blockdev.CheckRange(sv.Info(), srcOff, length); err != nil {
		return err
	}
	v.mu.RLock()
	err := v.checkLocked(ctx, dstOff, length, true)
	v.mu.RUnlock()
	if err != nil || length == 0 {
		return err
	}
	if sv.store != v.store || sv.sb.ID != v.sb.ID || sv.bs != v.bs {
		return v.copyData(ctx, sv, srcOff, dstOff, length)
	}
	const window = 64 << 20
	for done := int64(0); done < length; {
		n := min(length-done, window)
		if err := v.copyRefs(ctx, sv, srcOff+done, dstOff+done, n); err != nil {
			return err
		}
		done += n
	}
	v.stats.guestWriteOps.Add(1)
	return nil
}

// copyRefs copies the map entries of one window.
func (v *Volume) copyRefs(ctx context.Context, sv *Volume, srcOff, dstOff, length int64) error {
	bs := uint64(v.bs)
	r, err := sv.resolve(ctx, uint64(srcOff)/bs, uint64(length)/bs)
	if err != nil {
		return err
	}
	defer r.release()
	dst := uint64(dstOff) / bs
	var copied int64 // bytes copied as data (pieces not yet durable)
	for i, p := range r.pieces {
		if p.kind == pieceData && r.bufs[i] != nil {
			copied += int64(p.n * bs)
		}
	}
	return v.mutate(ctx, dstOff, length, copied, func() {
		for i, p := range r.pieces {
			at := dst + (p.start - r.pieces[0].start)
			switch {
			case p.kind != pieceData:
				for done := uint64(0); done < p.n; {
					k := min(p.n-done, 1<<31)
					v.appendLocked(format.RecordData, format.Entry{Kind: format.EntryUnmap, Count: uint32(k), LBA: at + done}, nil)
					done += k
				}
				v.mu.active.set(at, p.n, true, loc{})
			case r.bufs[i] != nil:
				// Not yet durable: a reference could outlive the data
				// in a crash, so copy the bytes.
				b := r.bufs[i][p.loc.off : uint64(p.loc.off)+p.n*bs]
				v.writeBlocksLocked(format.RecordData, format.EntryWrite, at, b, loc{}, v.mu.active.setData)
			default:
				for done := uint64(0); done < p.n; {
					k := min(p.n-done, 1<<31)
					l := p.loc.advance(done, v.bs)
					v.appendLocked(format.RecordData, format.Entry{Kind: format.EntryRef, Layer: l.layer, Count: uint32(k), LBA: at + done, SrcSeq: l.seq, SrcOff: l.off}, nil)
					v.mu.active.set(at+done, k, false, l)
					done += k
				}
				if p.loc.layer == 0 {
					if s := v.mu.segs[p.loc.seq]; s != nil {
						s.flags |= format.UsageShared
					}
				}
			}
		}
	})
}

// copyData copies by reading and writing, in chunks.
func (v *Volume) copyData(ctx context.Context, sv *Volume, srcOff, dstOff, length int64) error {
	const chunk = 1 << 20
	buf := make([]byte, min(length, chunk))
	for done := int64(0); done < length; {
		n := min(length-done, chunk)
		if err := sv.ReadAt(ctx, buf[:n], srcOff+done); err != nil {
			return err
		}
		if err := v.WriteAt(ctx, buf[:n], dstOff+done, 0); err != nil {
			return err
		}
		done += n
	}
	return nil
}
