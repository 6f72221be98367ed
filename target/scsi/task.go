package scsi

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Task states.
const (
	taskPending   uint32 = iota // Begin returned; Execute not called yet
	taskExecuting               // inside Execute
	taskFinished                // Execute returned or End was called
)

// Task is one command from Begin to End.
type Task struct {
	target *Target
	cmd    *Command
	lu     *LU // the LU at Begin; nil for a LUN without one
	q      *taskQueue
	ctx    context.Context
	cancel context.CancelCauseFunc

	// deps are the tasks Execute waits for (SAM-5 8.6 task attributes).
	deps []*Task
	dep1 [1]*Task // inline storage for a SIMPLE task's single dependency

	state atomic.Uint32
	// fin records that the task is finished; waitCh, made only when
	// someone waits (task attributes, task management), is closed then.
	fin struct {
		sync.Mutex
		done   bool
		waitCh chan struct{}
	}
}

// doneChan returns a channel closed once the task is finished.
func (task *Task) doneChan() <-chan struct{} {
	task.fin.Lock()
	defer task.fin.Unlock()
	if task.fin.waitCh == nil {
		task.fin.waitCh = make(chan struct{})
		if task.fin.done {
			close(task.fin.waitCh)
		}
	}
	return task.fin.waitCh
}

// Context is done when the task is aborted.
func (task *Task) Context() context.Context { return task.ctx }

// Command returns the task's command.
func (task *Task) Command() *Command { return task.cmd }

// Execute runs the command. Call it once, after DataOut is complete. It
// first waits for the tasks the task attribute orders it after. An aborted
// task returns a Result with Aborted set (the transport sends nothing), or
// TASK ABORTED status when another nexus cleared the task set with TAS=1.
func (task *Task) Execute() Result {
	if !task.state.CompareAndSwap(taskPending, taskExecuting) {
		return task.abortedResult()
	}
	defer task.markFinished()
	for _, d := range task.deps {
		select {
		case <-d.doneChan():
		case <-task.ctx.Done():
		}
	}
	if task.ctx.Err() != nil {
		return task.abortedResult()
	}
	t := task.target
	var res Result
	if task.lu != nil {
		start := time.Now()
		task.lu.stats.begin()
		res = t.dispatch(task.ctx, task.lu, task.cmd)
		var op byte
		if len(task.cmd.CDB) > 0 {
			op = task.cmd.CDB[0]
		}
		task.lu.stats.end(op, &res, time.Since(start))
	} else {
		res = t.dispatch(task.ctx, nil, task.cmd)
	}
	if task.ctx.Err() != nil {
		res.Release()
		return task.abortedResult()
	}
	return res
}

func (task *Task) abortedResult() Result {
	if errors.Is(context.Cause(task.ctx), errTaskAbortTAS) {
		return Result{Status: StatusTaskAborted}
	}
	return Result{Aborted: true}
}

func (task *Task) markFinished() {
	task.fin.Lock()
	defer task.fin.Unlock()
	if task.fin.done {
		return
	}
	task.fin.done = true
	task.state.Store(taskFinished)
	if task.fin.waitCh != nil {
		close(task.fin.waitCh)
	}
}

// End unregisters the task. Call it once, after the response was sent (or
// the task was aborted).
func (task *Task) End() {
	task.q.remove(task)
	task.markFinished()
	task.cancel(nil)
}

// taskQueue is the task set of one LU (or of the LUNs without one).
type taskQueue struct {
	mu          sync.Mutex
	open        map[*Task]struct{}
	lastOrdered *Task
}

func (q *taskQueue) init() { q.open = make(map[*Task]struct{}) }

func isFinished(t *Task) bool {
	t.fin.Lock()
	defer t.fin.Unlock()
	return t.fin.done
}

func (q *taskQueue) add(t *Task) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch t.cmd.Attr {
	case AttrHeadOfQueue:
	case AttrOrdered:
		for x := range q.open {
			if !isFinished(x) {
				t.deps = append(t.deps, x)
			}
		}
		q.lastOrdered = t
	default: // SIMPLE, untagged, ACA
		if o := q.lastOrdered; o != nil && !isFinished(o) {
			t.dep1[0] = o
			t.deps = t.dep1[:]
		}
	}
	q.open[t] = struct{}{}
}

func (q *taskQueue) remove(t *Task) {
	q.mu.Lock()
	delete(q.open, t)
	if q.lastOrdered == t {
		q.lastOrdered = nil
	}
	q.mu.Unlock()
}

// cancel cancels the matching open tasks and appends them to hit.
func (q *taskQueue) cancel(hit []*Task, match func(*Task) bool, cause error) []*Task {
	q.mu.Lock()
	defer q.mu.Unlock()
	for t := range q.open {
		if match(t) {
			t.cancel(cause)
			hit = append(hit, t)
		}
	}
	return hit
}

func (q *taskQueue) find(match func(*Task) bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for t := range q.open {
		if match(t) {
			return true
		}
	}
	return false
}

func (q *taskQueue) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.open)
}
