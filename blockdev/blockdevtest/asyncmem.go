package blockdevtest

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/mem"
)

// AsyncMem is a mem.Device with blockdev.AsyncIO, for tests of the callers
// of the asynchronous path without a backend that has one (librbd): every
// started request runs on a goroutine of its own, after Delay, and at most
// slots run at once; a start beyond that is refused, as a Device whose
// request slots are all busy refuses it.
type AsyncMem struct {
	*mem.Device
	slots  chan struct{}
	delay  atomic.Int64
	closed atomic.Bool

	// Started and Refused count the starts that were taken and refused.
	Started, Refused atomic.Int64
}

var _ blockdev.AsyncIO = (*AsyncMem)(nil)

// NewAsyncMem adds AsyncIO to d, with at most slots requests in flight.
func NewAsyncMem(d *mem.Device, slots int) *AsyncMem {
	return &AsyncMem{Device: d, slots: make(chan struct{}, slots)}
}

// SetDelay makes every request started from now on complete after delay.
func (a *AsyncMem) SetDelay(delay time.Duration) { a.delay.Store(int64(delay)) }

// StartReadAt implements blockdev.AsyncIO.
func (a *AsyncMem) StartReadAt(ctx context.Context, p []byte, off int64, done blockdev.Completion) bool {
	return a.start(ctx, p, off, done, func() error { return a.Device.ReadAt(ctx, p, off) })
}

// StartWriteAt implements blockdev.AsyncIO.
func (a *AsyncMem) StartWriteAt(ctx context.Context, p []byte, off int64, done blockdev.Completion) bool {
	if a.Info().ReadOnly {
		a.Refused.Add(1)
		return false
	}
	return a.start(ctx, p, off, done, func() error { return a.Device.WriteAt(ctx, p, off, 0) })
}

func (a *AsyncMem) start(ctx context.Context, p []byte, off int64, done blockdev.Completion, io func() error) bool {
	if len(p) == 0 || ctx.Err() != nil || a.closed.Load() || blockdev.CheckRange(a.Info(), off, int64(len(p))) != nil {
		a.Refused.Add(1)
		return false
	}
	select {
	case a.slots <- struct{}{}:
	default:
		a.Refused.Add(1)
		return false
	}
	a.Started.Add(1)
	delay := time.Duration(a.delay.Load())
	go func() {
		if delay > 0 {
			time.Sleep(delay)
		}
		err := io()
		<-a.slots
		done.Done(err)
	}()
	return true
}

// Close implements blockdev.Device; starts are refused afterwards.
func (a *AsyncMem) Close() error {
	a.closed.Store(true)
	return a.Device.Close()
}
