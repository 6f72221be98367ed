package fault

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/mem"
)

// SectorSize is the unit of atomicity of backend.Overwriter writes.
const SectorSize = 512

// InFlight selects what a crash does to the mutations in flight.
type InFlight uint8

const (
	// LoseInFlight: no mutation in flight happened.
	LoseInFlight InFlight = iota
	// CompleteInFlight: every mutation in flight happened completely.
	CompleteInFlight
	// TearInFlight: each Put and Delete in flight happened or not; each
	// WriteAt left each 512-byte aligned sector it touches new or old.
	TearInFlight
)

func (f InFlight) String() string {
	switch f {
	case LoseInFlight:
		return "lose"
	case CompleteInFlight:
		return "complete"
	case TearInFlight:
		return "tear"
	}
	return "unknown"
}

// CrashOptions configure a crash clone.
type CrashOptions struct {
	// InFlight decides the fate of mutations in flight.
	InFlight InFlight
	// Seed seeds TearInFlight's choices.
	Seed uint64
}

// CrashClone implements Store.
func (s *store) CrashClone(opts CrashOptions) (Store, error) {
	return s.crashClone(opts, false)
}

// crashClone builds a crash clone; with crash set it also crashes s (the
// first crash wins; later ones still return their own clone).
func (s *store) crashClone(opts CrashOptions, crash bool) (Store, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil, fmt.Errorf("fault: CrashClone: %w", backend.ErrClosed)
	}
	base, err := snapshot(s.inner, s.ow != nil)
	if err != nil {
		return nil, fmt.Errorf("fault: CrashClone: %w", err)
	}
	inflight := make([]*pending, 0, len(s.mu.pending))
	for _, p := range s.mu.pending {
		inflight = append(inflight, p)
	}
	slices.SortFunc(inflight, func(a, b *pending) int { return cmp.Compare(a.op.Seq, b.op.Seq) })
	rng := rand.New(rand.NewPCG(opts.Seed, 0x637261736821))
	for _, p := range inflight {
		if err := resolve(base, p, opts.InFlight, rng); err != nil {
			_ = base.Close()
			return nil, fmt.Errorf("fault: CrashClone: op %d %s %q: %w", p.op.Seq, p.op.Kind, p.op.Name, err)
		}
	}
	c := New(base)
	if crash && s.mu.crashed == nil {
		s.mu.crashed = c
	}
	return c, nil
}

// snapshot deep-copies inner into a new mem store. It runs with no mutation
// in progress (applyMu held).
func snapshot(inner backend.Store, overwriter bool) (mem.Store, error) {
	if m, ok := inner.(mem.Store); ok {
		return m.Clone()
	}
	ctx := context.Background()
	base := mem.New(&mem.Options{DisableOverwriter: !overwriter, MaxObjectBytes: 1 << 40})
	err := inner.List(ctx, "", func(info backend.ObjectInfo) error {
		data := make([]byte, info.Size)
		n, err := inner.ReadAt(ctx, info.Name, data, 0)
		if err != nil && !(errors.Is(err, io.EOF) && n == len(data)) {
			return fmt.Errorf("copy %q: %w", info.Name, err)
		}
		return base.Put(ctx, info.Name, data)
	})
	if err != nil {
		_ = base.Close()
		return nil, err
	}
	return base, nil
}

// resolve applies a pending mutation to a crash clone as mode says. A
// mutation the inner store would have refused for lack of space is simply
// lost.
func resolve(base mem.Store, p *pending, mode InFlight, rng *rand.Rand) error {
	if mode == LoseInFlight {
		return nil
	}
	whole := mode == CompleteInFlight
	ctx := context.Background()
	var err error
	switch p.op.Kind {
	case OpPut:
		if whole || rng.IntN(2) == 1 {
			err = base.Put(ctx, p.op.Name, p.data)
		}
	case OpDelete:
		if whole || rng.IntN(2) == 1 {
			err = base.Delete(ctx, p.op.Name)
		}
	case OpWriteAt:
		ow, ok := base.(backend.Overwriter)
		if !ok {
			return errors.New("WriteAt in flight on a store without Overwriter")
		}
		if whole {
			err = ow.WriteAt(ctx, p.op.Name, p.data, p.op.Off)
			break
		}
		// Each 512-byte aligned sector the write touches lands or not:
		//
		//	off                                   off+len(p)
		//	 |  part  | sector | sector | ... | part |
		//	 ^ sector boundaries at multiples of 512
		off, data := p.op.Off, p.data
		for len(data) > 0 {
			n := min(int64(len(data)), SectorSize-off%SectorSize)
			if rng.IntN(2) == 1 {
				if err = ow.WriteAt(ctx, p.op.Name, data[:n], off); err != nil {
					break
				}
			}
			off, data = off+n, data[n:]
		}
	}
	if errors.Is(err, backend.ErrNoSpace) {
		return nil
	}
	return err
}
