package scsi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by Target configuration methods.
var (
	ErrLUNExists    = errors.New("scsi: LUN already exists")
	ErrNoSuchLUN    = errors.New("scsi: no such LUN")
	ErrLUNRange     = errors.New("scsi: LUN number out of range")
	ErrLUAttached   = errors.New("scsi: LU already attached to a target")
	ErrInvalidLU    = errors.New("scsi: invalid LU options")
	errTaskAborted  = errors.New("scsi: task aborted")
	errTaskAbortTAS = errors.New("scsi: task aborted by another nexus (TAS)")
)

// DefaultAbortWait is how long task management waits for an aborted task
// that is executing before it answers anyway.
const DefaultAbortWait = time.Second

// TargetOptions configure a Target. The zero value is valid.
type TargetOptions struct {
	// Logger receives the target's logs; nil discards them.
	Logger *slog.Logger
	// AbortWait bounds how long ManageTask waits for aborted tasks that
	// are executing (for example stuck in a Device call) before it
	// answers; their results are dropped when they finish. Zero means
	// DefaultAbortWait.
	AbortWait time.Duration
	// Registry, when set, makes the Target's LUs reachable from every
	// other Target created with the same Registry (EXTENDED COPY between
	// LUs of the daemon). Nil gives the Target a private Registry.
	Registry *Registry
	// ALUA, when set, is the target port group configuration reported by
	// INQUIRY (TPGS), VPD 0x83 and REPORT TARGET PORT GROUPS, and enforced
	// per command. Nil means every port is active/optimized and ALUA is
	// not reported.
	ALUA *ALUA
}

// Target is a SCSI target device: a set of logical units addressed by LUN,
// reached through one or more target ports. It keeps the task set of every
// logical unit so that task management can reach any task.
//
// All methods may be called concurrently.
type Target struct {
	name      string
	log       *slog.Logger
	abortWait time.Duration
	registry  *Registry
	alua      *ALUA
	table     *commandTable
	// reqs recycles request structs (one per command).
	reqs sync.Pool

	mu struct {
		sync.RWMutex
		lus map[uint64]*LU
	}
	// lus is an immutable copy of mu.lus, republished by every change, so
	// that finding a command's LU takes no lock.
	lus atomic.Pointer[map[uint64]*LU]
	// orphans holds the tasks addressed to LUNs without an LU.
	orphans taskQueue
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
	t := &Target{
		name:      name,
		log:       log.With("target", name),
		abortWait: opts.AbortWait,
		registry:  opts.Registry,
		alua:      opts.ALUA,
		table:     defaultTable(),
	}
	if t.abortWait <= 0 {
		t.abortWait = DefaultAbortWait
	}
	if t.registry == nil {
		t.registry = NewRegistry()
	}
	t.mu.lus = make(map[uint64]*LU)
	t.publishLocked()
	t.orphans.init()
	if t.alua != nil {
		t.alua.addTarget(t)
	}
	return t
}

// Name returns the target's name.
func (t *Target) Name() string { return t.name }

// AddLU attaches lu as LUN lun. Every nexus sees a REPORTED LUNS DATA HAS
// CHANGED unit attention. An LU belongs to one Target at a time.
func (t *Target) AddLU(lun uint64, lu *LU) error {
	if lun > MaxLUN {
		return fmt.Errorf("%w: %d", ErrLUNRange, lun)
	}
	if lu == nil {
		return fmt.Errorf("%w: nil LU", ErrInvalidLU)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.mu.lus[lun]; ok {
		return fmt.Errorf("%w: %d", ErrLUNExists, lun)
	}
	if !lu.attach(t, lun) {
		return fmt.Errorf("%w: LUN %d", ErrLUAttached, lun)
	}
	if err := t.registry.add(lu); err != nil {
		lu.detach()
		return err
	}
	for _, other := range t.mu.lus {
		other.broadcastUA(nil, ascReportedLUNsChanged)
	}
	t.mu.lus[lun] = lu
	t.publishLocked()
	return nil
}

// publishLocked republishes the lock-free copy of the LU map.
func (t *Target) publishLocked() {
	m := make(map[uint64]*LU, len(t.mu.lus))
	for lun, lu := range t.mu.lus {
		m[lun] = lu
	}
	t.lus.Store(&m)
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
	t.publishLocked()
	t.registry.remove(lu)
	lu.detach()
	for _, other := range t.mu.lus {
		other.broadcastUA(nil, ascReportedLUNsChanged)
	}
	return lu, nil
}

// LU returns the logical unit at lun, or nil.
func (t *Target) LU(lun uint64) *LU {
	return (*t.lus.Load())[lun]
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

func (t *Target) allLUs() []*LU {
	t.mu.RLock()
	defer t.mu.RUnlock()
	lus := make([]*LU, 0, len(t.mu.lus))
	for _, lu := range t.mu.lus {
		lus = append(lus, lu)
	}
	return lus
}

// Begin registers a command's task. Call it in command order; the task's
// context is done when task management aborts it or its nexus is lost.
// The task attribute decides what Execute waits for: a SIMPLE task waits
// for older ORDERED tasks of its LU, an ORDERED task for every older task
// of its LU, a HEAD OF QUEUE task for nothing.
func (t *Target) Begin(ctx context.Context, cmd *Command) *Task {
	lu := t.LU(cmd.LUN)
	q := &t.orphans
	if lu != nil {
		q = &lu.tasks
	}
	task := &Task{target: t, cmd: cmd, lu: lu, q: q}
	task.ctx, task.cancel = context.WithCancelCause(ctx)
	q.add(task)
	return task
}

// ManageTask performs a task management function and returns when every
// task it aborts has ended or could not be waited for any longer
// (TargetOptions.AbortWait). It answers ABORT TASK for a tag it does not
// know with TMFTaskNotFound; an iSCSI transport turns that into "function
// complete" when the referenced CmdSN lies in its window (RFC 7143
// 11.6.1), which this package cannot see.
func (t *Target) ManageTask(ctx context.Context, req TMFRequest) TMFResponse {
	sameNexus := func(x *Task) bool { return x.cmd.Nexus == req.Nexus }
	switch req.Function {
	case TMFAbortTask:
		match := func(x *Task) bool { return sameNexus(x) && x.cmd.Tag == req.RefTag }
		if t.abort(ctx, t.queuesFor(nil), match, errTaskAborted) == 0 {
			return TMFTaskNotFound
		}
		return TMFFunctionComplete
	case TMFAbortTaskSet:
		lu := t.LU(req.LUN)
		if lu == nil {
			return TMFIncorrectLUN
		}
		t.abort(ctx, []*taskQueue{&lu.tasks}, sameNexus, errTaskAborted)
		return TMFFunctionComplete
	case TMFClearTaskSet:
		lu := t.LU(req.LUN)
		if lu == nil {
			return TMFIncorrectLUN
		}
		t.clearTaskSet(ctx, lu, req.Nexus)
		return TMFFunctionComplete
	case TMFLogicalUnitReset:
		lu := t.LU(req.LUN)
		if lu == nil {
			return TMFIncorrectLUN
		}
		t.abort(ctx, []*taskQueue{&lu.tasks}, func(*Task) bool { return true }, errTaskAborted)
		lu.reset(ascBusDeviceReset)
		return TMFFunctionComplete
	case TMFTargetWarmReset, TMFTargetColdReset:
		t.abort(ctx, t.queuesFor(nil), func(*Task) bool { return true }, errTaskAborted)
		code := ascBusDeviceReset
		if req.Function == TMFTargetColdReset {
			code = ascPowerOnOccurred
		}
		for _, lu := range t.allLUs() {
			lu.reset(code)
		}
		return TMFFunctionComplete
	case TMFITNexusReset:
		t.abort(ctx, t.queuesFor(nil), sameNexus, errTaskAborted)
		for _, lu := range t.allLUs() {
			lu.nexusReset(req.Nexus)
		}
		return TMFFunctionComplete
	case TMFQueryTask:
		if t.find(func(x *Task) bool { return sameNexus(x) && x.cmd.Tag == req.RefTag }) {
			return TMFFunctionSucceeded
		}
		return TMFFunctionComplete
	case TMFQueryTaskSet:
		if t.LU(req.LUN) == nil {
			return TMFIncorrectLUN
		}
		if t.find(func(x *Task) bool { return sameNexus(x) && x.cmd.LUN == req.LUN }) {
			return TMFFunctionSucceeded
		}
		return TMFFunctionComplete
	case TMFQueryAsyncEvent:
		lu := t.LU(req.LUN)
		if lu == nil {
			return TMFIncorrectLUN
		}
		if lu.nexusState(req.Nexus).hasUA() {
			return TMFFunctionSucceeded
		}
		return TMFFunctionComplete
	}
	// CLEAR ACA (NACA is not supported) and TASK REASSIGN (ERL 0).
	return TMFNotSupported
}

// clearTaskSet aborts every task of lu. Tasks of other nexuses end with
// TASK ABORTED status when the control mode page has TAS=1; otherwise
// they end silently and their nexuses get COMMANDS CLEARED BY ANOTHER
// INITIATOR (SAM-5 7.6).
func (t *Target) clearTaskSet(ctx context.Context, lu *LU, by *Nexus) {
	tas := lu.mode.tas.Load()
	others := make(map[*Nexus]bool)
	lu.tasks.mu.Lock()
	for x := range lu.tasks.open {
		if x.cmd.Nexus != by {
			others[x.cmd.Nexus] = true
		}
	}
	lu.tasks.mu.Unlock()
	t.abort(ctx, []*taskQueue{&lu.tasks}, func(x *Task) bool { return x.cmd.Nexus == by }, errTaskAborted)
	cause := errTaskAborted
	if tas {
		cause = errTaskAbortTAS
	}
	t.abort(ctx, []*taskQueue{&lu.tasks}, func(x *Task) bool { return x.cmd.Nexus != by }, cause)
	if !tas {
		for n := range others {
			lu.nexusState(n).addUA(ascCommandsClearedByOther)
		}
	}
}

// queuesFor returns the task queues of lu, or of every LU and the orphans.
func (t *Target) queuesFor(lu *LU) []*taskQueue {
	if lu != nil {
		return []*taskQueue{&lu.tasks}
	}
	lus := t.allLUs()
	qs := make([]*taskQueue, 0, len(lus)+1)
	for _, l := range lus {
		qs = append(qs, &l.tasks)
	}
	return append(qs, &t.orphans)
}

// abort cancels the matching tasks of qs and waits, at most abortWait, for
// those that are executing. It returns how many tasks matched.
func (t *Target) abort(ctx context.Context, qs []*taskQueue, match func(*Task) bool, cause error) int {
	var hit []*Task
	for _, q := range qs {
		hit = q.cancel(hit, match, cause)
	}
	if len(hit) == 0 {
		return 0
	}
	timer := time.NewTimer(t.abortWait)
	defer timer.Stop()
	for _, x := range hit {
		if x.state.Load() != taskExecuting {
			continue
		}
		select {
		case <-x.doneChan():
		case <-timer.C:
			t.log.Warn("aborted task still executing; answering task management anyway",
				"lun", x.cmd.LUN, "tag", x.cmd.Tag, "wait", t.abortWait)
			return len(hit)
		case <-ctx.Done():
			return len(hit)
		}
	}
	return len(hit)
}

func (t *Target) find(match func(*Task) bool) bool {
	for _, q := range t.queuesFor(nil) {
		if q.find(match) {
			return true
		}
	}
	return false
}

// NexusLost aborts the nexus' tasks and drops its per-nexus state (unit
// attentions, SCSI-2 reservation, medium removal prevention). The
// transport calls it when a session ends. Persistent reservations and
// registrations survive, as SPC-4 requires.
func (t *Target) NexusLost(n *Nexus) {
	for _, q := range t.queuesFor(nil) {
		q.cancel(nil, func(x *Task) bool { return x.cmd.Nexus == n }, errTaskAborted)
	}
	for _, lu := range t.allLUs() {
		lu.nexusLost(n)
	}
}
