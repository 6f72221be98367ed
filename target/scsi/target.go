package scsi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/lunway/lunway/blockdev"
)

// Errors returned by Target configuration methods.
var (
	ErrLUNExists   = errors.New("scsi: LUN already exists")
	ErrNoSuchLUN   = errors.New("scsi: no such LUN")
	ErrLUNRange    = errors.New("scsi: LUN number out of range")
	errTaskAborted = errors.New("scsi: task aborted")
)

// TargetOptions configure a Target. The zero value is valid.
type TargetOptions struct {
	// Logger receives the target's logs; nil discards them.
	Logger *slog.Logger
}

// Target is a SCSI target device: a set of logical units addressed by LUN,
// reached through one or more target ports. It keeps the task set of every
// logical unit so that task management can reach any task.
//
// All methods may be called concurrently.
type Target struct {
	name string
	log  *slog.Logger

	mu struct {
		sync.RWMutex
		lus map[uint64]*LU
	}
	tasks taskSet
}

// NewTarget returns a target with no logical units.
func NewTarget(name string, opts *TargetOptions) *Target {
	if opts == nil {
		opts = &TargetOptions{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Target{name: name, log: log.With("target", name)}
	t.mu.lus = make(map[uint64]*LU)
	t.tasks.init()
	return t
}

// Name returns the target's name.
func (t *Target) Name() string { return t.name }

// AddLU attaches lu as LUN lun. Every nexus sees a REPORTED LUNS DATA HAS
// CHANGED unit attention.
func (t *Target) AddLU(lun uint64, lu *LU) error {
	if lun > MaxLUN {
		return fmt.Errorf("%w: %d", ErrLUNRange, lun)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.mu.lus[lun]; ok {
		return fmt.Errorf("%w: %d", ErrLUNExists, lun)
	}
	t.mu.lus[lun] = lu
	return nil
}

// RemoveLU detaches LUN lun and returns it. Tasks already running on it
// complete; the caller closes its Device.
func (t *Target) RemoveLU(lun uint64) (*LU, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	lu, ok := t.mu.lus[lun]
	if !ok {
		return nil, fmt.Errorf("%w: %d", ErrNoSuchLUN, lun)
	}
	delete(t.mu.lus, lun)
	return lu, nil
}

// LU returns the logical unit at lun, or nil.
func (t *Target) LU(lun uint64) *LU {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.mu.lus[lun]
}

// LUNs returns the attached LUN numbers in increasing order.
func (t *Target) LUNs() []uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	luns := make([]uint64, 0, len(t.mu.lus))
	for lun := range t.mu.lus {
		luns = append(luns, lun)
	}
	sort.Slice(luns, func(i, j int) bool { return luns[i] < luns[j] })
	return luns
}

// Begin registers a command's task. Call it in command order; the task's
// context is done when task management aborts it or its nexus is lost.
func (t *Target) Begin(ctx context.Context, cmd *Command) *Task {
	task := &Task{target: t, cmd: cmd}
	task.ctx, task.cancel = context.WithCancelCause(ctx)
	t.tasks.add(task)
	return task
}

// ManageTask performs a task management function and returns when every
// task it aborts has ended or could not be waited for any longer.
func (t *Target) ManageTask(ctx context.Context, req TMFRequest) TMFResponse {
	switch req.Function {
	case TMFAbortTask:
		if n := t.tasks.abort(func(x *Task) bool {
			return x.cmd.Nexus == req.Nexus && x.cmd.Tag == req.RefTag
		}); n == 0 {
			return TMFTaskNotFound
		}
		return TMFFunctionComplete
	case TMFAbortTaskSet:
		if t.LU(req.LUN) == nil {
			return TMFIncorrectLUN
		}
		t.tasks.abort(func(x *Task) bool { return x.cmd.Nexus == req.Nexus && x.cmd.LUN == req.LUN })
		return TMFFunctionComplete
	case TMFClearTaskSet, TMFLogicalUnitReset:
		if t.LU(req.LUN) == nil {
			return TMFIncorrectLUN
		}
		t.tasks.abort(func(x *Task) bool { return x.cmd.LUN == req.LUN })
		return TMFFunctionComplete
	case TMFTargetWarmReset, TMFTargetColdReset:
		t.tasks.abort(func(*Task) bool { return true })
		return TMFFunctionComplete
	}
	return TMFNotSupported
}

// NexusLost aborts the nexus' tasks and drops its per-nexus state. The
// transport calls it when a session ends.
func (t *Target) NexusLost(n *Nexus) {
	t.tasks.abort(func(x *Task) bool { return x.cmd.Nexus == n })
}

// Task is one command from Begin to End.
type Task struct {
	target *Target
	cmd    *Command
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// Context is done when the task is aborted.
func (task *Task) Context() context.Context { return task.ctx }

// Command returns the task's command.
func (task *Task) Command() *Command { return task.cmd }

// Execute runs the command. Call it once, after DataOut is complete.
func (task *Task) Execute() Result {
	if task.ctx.Err() != nil {
		return Result{Aborted: true}
	}
	t := task.target
	lu := t.LU(task.cmd.LUN)
	res := t.dispatch(task.ctx, lu, task.cmd)
	if task.ctx.Err() != nil {
		res.Release()
		return Result{Aborted: true}
	}
	return res
}

// End unregisters the task.
func (task *Task) End() {
	task.target.tasks.remove(task)
	task.cancel(nil)
}

// taskSet is the set of open tasks of a target.
type taskSet struct {
	mu    sync.Mutex
	tasks map[*Task]struct{}
}

func (s *taskSet) init() { s.tasks = make(map[*Task]struct{}) }

func (s *taskSet) add(t *Task) {
	s.mu.Lock()
	s.tasks[t] = struct{}{}
	s.mu.Unlock()
}

func (s *taskSet) remove(t *Task) {
	s.mu.Lock()
	delete(s.tasks, t)
	s.mu.Unlock()
}

func (s *taskSet) abort(match func(*Task) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for t := range s.tasks {
		if match(t) {
			t.cancel(errTaskAborted)
			n++
		}
	}
	return n
}

// LUOptions configure a logical unit.
type LUOptions struct {
	// Device is the storage. Required.
	Device blockdev.Device
	// SerialNumber is reported in VPD page 0x80; stable across restarts.
	SerialNumber string
	// NAA is the 16-byte NAA IEEE Registered Extended designator (NAA 6)
	// reported in VPD page 0x83; stable across restarts.
	NAA [16]byte
	// VendorID (8 chars), ProductID (16) and Revision (4) for INQUIRY;
	// empty means Lunway's defaults.
	VendorID, ProductID, Revision string
	// Logger receives the LU's logs; nil discards them.
	Logger *slog.Logger
}

// LU is a logical unit: a Device and the SCSI state around it.
type LU struct {
	opts LUOptions
	dev  blockdev.Device
	log  *slog.Logger
}

// NewLU returns a logical unit over opts.Device.
func NewLU(opts LUOptions) (*LU, error) {
	if opts.Device == nil {
		return nil, errors.New("scsi: LUOptions.Device is nil")
	}
	if opts.VendorID == "" {
		opts.VendorID = "LUNWAY"
	}
	if opts.ProductID == "" {
		opts.ProductID = "VIRTUAL-DISK"
	}
	if opts.Revision == "" {
		opts.Revision = "0001"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &LU{opts: opts, dev: opts.Device, log: log}, nil
}

// Device returns the LU's storage.
func (lu *LU) Device() blockdev.Device { return lu.dev }

// CapacityChanged tells the LU that its Device was resized: every nexus
// gets a CAPACITY DATA HAS CHANGED unit attention.
func (lu *LU) CapacityChanged() {}
