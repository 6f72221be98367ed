package fault

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/blockdev"
)

// Availability is the state SetAvailability puts a Store in.
type Availability uint8

const (
	// Available: calls go through (subject to the rules).
	Available Availability = iota
	// Unavailable: every call fails at once with backend.ErrUnavailable.
	Unavailable
	// UnavailableHang: every call blocks until its context is done, then
	// fails with the context's error and backend.ErrUnavailable; calls
	// still blocked when the store becomes Available again proceed.
	UnavailableHang
)

func (a Availability) String() string {
	switch a {
	case Available:
		return "available"
	case Unavailable:
		return "unavailable"
	case UnavailableHang:
		return "unavailable-hang"
	}
	return "unknown"
}

// Stats counts calls and injected faults, indexed by Kind.
type Stats struct {
	// Calls counts every call, including those that failed.
	Calls [NumKinds]int64
	// Failed counts injected failures: Fail rules, unavailability, crashes.
	Failed [NumKinds]int64
	// Dropped counts calls a Drop rule swallowed.
	Dropped [NumKinds]int64
	// Delayed counts calls a Delay rule held.
	Delayed [NumKinds]int64
	// Hung counts calls that blocked on a Hang rule or UnavailableHang.
	Hung [NumKinds]int64
	// Corrupted counts calls whose data a Corrupt rule changed.
	Corrupted [NumKinds]int64
	// Mutations is the number of mutating calls numbered so far (the next
	// mutation's index).
	Mutations int64
}

// Store is a fault-injecting backend.Store. The value New returns
// implements backend.Overwriter exactly when the inner store does, which is
// why New returns an interface.
//
// All methods may be called concurrently.
type Store interface {
	backend.Store

	// AddRule adds a rule after the existing ones.
	AddRule(r Rule) RuleID
	// RemoveRule removes a rule; it reports whether the rule existed.
	RemoveRule(id RuleID) bool
	// ClearRules removes every rule.
	ClearRules()
	// Hits reports how many times a rule fired (also after it retired).
	Hits(id RuleID) int64

	// SetAvailability makes the store unavailable or available again.
	SetAvailability(a Availability)
	// Stats returns a snapshot of the counters.
	Stats() Stats

	// CrashClone returns a new Store, independent of this one, holding
	// what a crash now would leave behind: every completed mutation, and
	// the mutations in flight resolved as opts says. The clone has no
	// rules, is available, and is itself crash-clonable.
	CrashClone(opts CrashOptions) (Store, error)
	// Crashed returns the clone a Crash action took, if one fired.
	Crashed() (Store, bool)

	// Inner returns the wrapped store, to inspect it without faults.
	Inner() backend.Store
}

// New wraps inner. Closing the returned Store closes inner.
func New(inner backend.Store) Store {
	s := &store{inner: inner, closeCh: make(chan struct{})}
	s.mu.pending = make(map[int64]*pending)
	if ow, ok := inner.(backend.Overwriter); ok {
		s.ow = ow
		return &overwriting{s}
	}
	return s
}

// pending is a mutation in flight: admitted but not yet applied to inner.
type pending struct {
	op   Op
	data []byte // Put and WriteAt: what would be stored
}

type store struct {
	inner   backend.Store
	ow      backend.Overwriter // nil unless inner is one
	closeCh chan struct{}      // closed by Close, releases waiting calls

	// applyMu is held shared while a mutation runs in the inner store and
	// exclusively by CrashClone, so that a clone sees every mutation either
	// applied or pending, never half-way. Lock order: applyMu, then mu.
	applyMu sync.RWMutex

	mu struct {
		sync.Mutex
		closed    bool
		rules     []*rule
		nextID    RuleID
		seq       int64
		mutations int64
		stats     Stats
		avail     Availability
		back      chan struct{} // non-nil while unavailable; closed on any change
		pending   map[int64]*pending
		crashed   Store // set by the first Crash action
	}
}

type overwriting struct{ *store }

var (
	_ Store              = (*store)(nil)
	_ Store              = (*overwriting)(nil)
	_ backend.Overwriter = (*overwriting)(nil)
)

// call is one admitted operation.
type call struct {
	op      Op
	actions []Action // actions of the matching rules, ending with at most one terminal action
	pend    *pending // nil unless mutating
}

// begin admits an operation: it checks the request, waits out
// unavailability, numbers the operation, consults the rules and registers
// a mutation as in flight. On success the caller must call s.end(c).
func (s *store) begin(ctx context.Context, kind Kind, name string, off int64, n int, data []byte) (*call, error) {
	if kind != OpList {
		if err := backend.ValidName(name); err != nil {
			return nil, fmt.Errorf("fault: %s: %w", kind, err)
		}
	}
	if off < 0 {
		return nil, fmt.Errorf("fault: %s %q: negative offset %d: %w", kind, name, off, blockdev.ErrOutOfRange)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil, fmt.Errorf("fault: %s %q: %w", kind, name, backend.ErrClosed)
	}
	s.mu.stats.Calls[kind]++
	hung := false
	for {
		if s.mu.closed {
			return nil, fmt.Errorf("fault: %s %q: %w", kind, name, backend.ErrClosed)
		}
		if s.mu.crashed != nil {
			s.mu.stats.Failed[kind]++
			return nil, fmt.Errorf("fault: %s %q: %w (%w)", kind, name, ErrCrashed, backend.ErrUnavailable)
		}
		if s.mu.avail == Available {
			break
		}
		if s.mu.avail == Unavailable {
			s.mu.stats.Failed[kind]++
			return nil, fmt.Errorf("fault: %s %q: %w (%w)", kind, name, backend.ErrUnavailable, ErrInjected)
		}
		if !hung {
			hung = true
			s.mu.stats.Hung[kind]++
		}
		back := s.mu.back
		s.mu.Unlock()
		var err error
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-s.closeCh:
		case <-back:
		}
		s.mu.Lock()
		if err != nil {
			return nil, fmt.Errorf("fault: %s %q: hung while unavailable: %w (%w)", kind, name, err, backend.ErrUnavailable)
		}
	}
	c := &call{op: Op{Kind: kind, Name: name, Off: off, Len: n, Seq: s.mu.seq, Mutation: -1}}
	s.mu.seq++
	if kind.Mutating() {
		c.op.Mutation = s.mu.mutations
		s.mu.mutations++
		s.mu.stats.Mutations = s.mu.mutations
		c.pend = &pending{op: c.op, data: data}
		s.mu.pending[c.op.Seq] = c.pend
	}
	for _, r := range s.mu.rules {
		if r.r.Times > 0 && r.hits >= r.r.Times || !r.r.Action.appliesTo(kind) {
			continue
		}
		if r.r.Match != nil && !r.r.Match(c.op) {
			continue
		}
		r.hits++
		c.actions = append(c.actions, r.r.Action)
		if r.r.Action.kind.terminal() {
			break
		}
	}
	return c, nil
}

// end retires a call's pending mutation. It may be called more than once.
func (s *store) end(c *call) {
	if c.pend == nil {
		return
	}
	s.mu.Lock()
	delete(s.mu.pending, c.op.Seq)
	s.mu.Unlock()
}

// outcome is what the actions decided.
type outcome struct {
	drop    bool
	corrupt *corrupter
}

// act runs a call's actions. It returns an error when an action ends the
// call with one.
func (s *store) act(ctx context.Context, c *call) (outcome, error) {
	var out outcome
	k, name := c.op.Kind, c.op.Name
	for _, a := range c.actions {
		switch a.kind {
		case actCall:
			a.fn(c.op)
		case actDelay:
			s.count(func(st *Stats) { st.Delayed[k]++ })
			if err := wait(ctx, a.delay, s.closeCh); err != nil {
				return out, fmt.Errorf("fault: %s %q: delayed: %w", k, name, err)
			}
		case actCorrupt:
			out.corrupt = a.corrupt
		case actFail:
			s.count(func(st *Stats) { st.Failed[k]++ })
			return out, fmt.Errorf("fault: %s %q: %w (%w)", k, name, a.err, ErrInjected)
		case actDrop:
			s.count(func(st *Stats) { st.Dropped[k]++ })
			out.drop = true
			return out, nil
		case actHang:
			s.count(func(st *Stats) { st.Hung[k]++ })
			var err error
			select {
			case <-ctx.Done():
				err = ctx.Err()
			case <-s.closeCh:
				err = backend.ErrClosed
			}
			return out, fmt.Errorf("fault: %s %q: hung: %w (%w)", k, name, err, backend.ErrUnavailable)
		case actCrash:
			s.count(func(st *Stats) { st.Failed[k]++ })
			if _, err := s.crashClone(a.crash, true); err != nil {
				return out, fmt.Errorf("fault: %s %q: crash clone: %w", k, name, err)
			}
			return out, fmt.Errorf("fault: %s %q: %w (%w)", k, name, ErrCrashed, backend.ErrUnavailable)
		}
	}
	return out, nil
}

func (s *store) count(f func(*Stats)) {
	s.mu.Lock()
	f(&s.mu.stats)
	s.mu.Unlock()
}

// corruptCopy returns data with one bit flipped, and records it as what the
// pending mutation would store.
func (s *store) corruptCopy(c *call, cr *corrupter, data []byte) []byte {
	if len(data) == 0 {
		return data
	}
	bad := slices.Clone(data)
	cr.flip(bad)
	s.mu.Lock()
	s.mu.stats.Corrupted[c.op.Kind]++
	c.pend.data = bad
	s.mu.Unlock()
	return bad
}

// mutate runs a mutation in the inner store under applyMu and retires it.
func (s *store) mutate(c *call, f func() error) error {
	s.applyMu.RLock()
	defer s.applyMu.RUnlock()
	defer s.end(c)
	return f()
}

// ReadAt implements backend.Store.
func (s *store) ReadAt(ctx context.Context, name string, p []byte, off int64) (int, error) {
	c, err := s.begin(ctx, OpReadAt, name, off, len(p), nil)
	if err != nil {
		return 0, err
	}
	out, err := s.act(ctx, c)
	if err != nil {
		return 0, err
	}
	n, err := s.inner.ReadAt(ctx, name, p, off)
	if out.corrupt != nil && n > 0 {
		out.corrupt.flip(p[:n])
		s.count(func(st *Stats) { st.Corrupted[OpReadAt]++ })
	}
	return n, err
}

// Put implements backend.Store.
func (s *store) Put(ctx context.Context, name string, data []byte) error {
	c, err := s.begin(ctx, OpPut, name, 0, len(data), data)
	if err != nil {
		return err
	}
	defer s.end(c) // also if an action panics; end is idempotent
	out, err := s.act(ctx, c)
	if err != nil || out.drop {
		return err
	}
	if out.corrupt != nil {
		data = s.corruptCopy(c, out.corrupt, data)
	}
	return s.mutate(c, func() error { return s.inner.Put(ctx, name, data) })
}

// Delete implements backend.Store.
func (s *store) Delete(ctx context.Context, name string) error {
	c, err := s.begin(ctx, OpDelete, name, 0, 0, nil)
	if err != nil {
		return err
	}
	defer s.end(c) // also if an action panics; end is idempotent
	out, err := s.act(ctx, c)
	if err != nil || out.drop {
		return err
	}
	return s.mutate(c, func() error { return s.inner.Delete(ctx, name) })
}

// List implements backend.Store.
func (s *store) List(ctx context.Context, prefix string, fn func(backend.ObjectInfo) error) error {
	c, err := s.begin(ctx, OpList, prefix, 0, 0, nil)
	if err != nil {
		return err
	}
	if _, err := s.act(ctx, c); err != nil {
		return err
	}
	return s.inner.List(ctx, prefix, fn)
}

// Stat implements backend.Store.
func (s *store) Stat(ctx context.Context, name string) (backend.ObjectInfo, error) {
	c, err := s.begin(ctx, OpStat, name, 0, 0, nil)
	if err != nil {
		return backend.ObjectInfo{}, err
	}
	if _, err := s.act(ctx, c); err != nil {
		return backend.ObjectInfo{}, err
	}
	return s.inner.Stat(ctx, name)
}

// WriteAt implements backend.Overwriter.
func (s *overwriting) WriteAt(ctx context.Context, name string, p []byte, off int64) error {
	c, err := s.begin(ctx, OpWriteAt, name, off, len(p), p)
	if err != nil {
		return err
	}
	defer s.end(c) // also if an action panics; end is idempotent
	out, err := s.act(ctx, c)
	if err != nil || out.drop {
		return err
	}
	if out.corrupt != nil {
		p = s.corruptCopy(c, out.corrupt, p)
	}
	return s.mutate(c, func() error { return s.ow.WriteAt(ctx, name, p, off) })
}

// Close implements backend.Store: it releases blocked calls with ErrClosed
// and closes the inner store.
func (s *store) Close() error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return fmt.Errorf("fault: Close: %w", backend.ErrClosed)
	}
	s.mu.closed = true
	close(s.closeCh)
	s.mu.Unlock()
	return s.inner.Close()
}

// AddRule implements Store.
func (s *store) AddRule(r Rule) RuleID {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.nextID++
	s.mu.rules = append(s.mu.rules, &rule{id: s.mu.nextID, r: r})
	return s.mu.nextID
}

// RemoveRule implements Store.
func (s *store) RemoveRule(id RuleID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.mu.rules)
	s.mu.rules = slices.DeleteFunc(s.mu.rules, func(r *rule) bool { return r.id == id })
	return len(s.mu.rules) < n
}

// ClearRules implements Store.
func (s *store) ClearRules() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.rules = nil
}

// Hits implements Store.
func (s *store) Hits(id RuleID) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.mu.rules {
		if r.id == id {
			return r.hits
		}
	}
	return 0
}

// SetAvailability implements Store.
func (s *store) SetAvailability(a Availability) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.back != nil {
		close(s.mu.back) // wake hung calls to look again
		s.mu.back = nil
	}
	s.mu.avail = a
	if a != Available {
		s.mu.back = make(chan struct{})
	}
}

// Stats implements Store.
func (s *store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.stats
}

// Crashed implements Store.
func (s *store) Crashed() (Store, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.crashed, s.mu.crashed != nil
}

// Inner implements Store.
func (s *store) Inner() backend.Store { return s.inner }
