package fault

import (
	"context"
	"errors"
	"math/rand/v2"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lunway/lunway/backend"
)

var (
	// ErrInjected marks every failure this package made up, so that a test
	// can tell injected failures from real ones with errors.Is.
	ErrInjected = errors.New("fault: injected failure")
	// ErrCrashed: the store crashed (a Crash action fired); every call
	// fails with it. Such errors also wrap backend.ErrUnavailable.
	ErrCrashed = errors.New("fault: store crashed")
)

// Kind is a kind of Store operation.
type Kind uint8

// The kinds of operation, one per method of backend.Store and
// backend.Overwriter (Close excepted).
const (
	OpReadAt Kind = iota
	OpPut
	OpDelete
	OpList
	OpStat
	OpWriteAt

	// NumKinds is the number of kinds, for arrays indexed by Kind.
	NumKinds = int(OpWriteAt) + 1
)

var kindNames = [NumKinds]string{"ReadAt", "Put", "Delete", "List", "Stat", "WriteAt"}

func (k Kind) String() string {
	if int(k) < NumKinds {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Mutating reports whether operations of kind k change the store.
func (k Kind) Mutating() bool { return k == OpPut || k == OpDelete || k == OpWriteAt }

// Op describes one operation as the rules see it.
type Op struct {
	Kind Kind
	// Name is the object name, or the prefix for List.
	Name string
	// Off is the offset of ReadAt and WriteAt.
	Off int64
	// Len is the number of bytes to read (ReadAt) or write (Put, WriteAt).
	Len int
	// Seq is the operation's index among all operations of the store,
	// from 0, in the order they reached the rules.
	Seq int64
	// Mutation is the index among mutating operations (Put, Delete,
	// WriteAt), from 0; -1 for the others.
	Mutation int64
}

// A Matcher selects operations. It is called with the store's lock held:
// it must not call the store.
type Matcher func(Op) bool

// Kinds matches operations of the given kinds.
func Kinds(kinds ...Kind) Matcher {
	var set [NumKinds]bool
	for _, k := range kinds {
		if int(k) < NumKinds {
			set[k] = true
		}
	}
	return func(op Op) bool { return int(op.Kind) < NumKinds && set[op.Kind] }
}

// Mutations matches Put, Delete and WriteAt.
func Mutations() Matcher { return func(op Op) bool { return op.Kind.Mutating() } }

// Reads matches ReadAt, List and Stat.
func Reads() Matcher { return func(op Op) bool { return !op.Kind.Mutating() } }

// NamePrefix matches operations whose object name (List: prefix) starts
// with prefix.
func NamePrefix(prefix string) Matcher {
	return func(op Op) bool { return strings.HasPrefix(op.Name, prefix) }
}

// NameGlob matches object names against a path.Match pattern ('*' does not
// cross '/'). Like regexp.MustCompile it panics on a malformed pattern,
// which is a bug in the test that wrote it.
func NameGlob(pattern string) Matcher {
	if _, err := path.Match(pattern, ""); err != nil {
		panic("fault: NameGlob(" + pattern + "): " + err.Error())
	}
	return func(op Op) bool {
		ok, _ := path.Match(pattern, op.Name)
		return ok
	}
}

// OpIndex matches the operations with the given Seq numbers.
func OpIndex(seq ...int64) Matcher {
	seq = slices.Clone(seq)
	return func(op Op) bool { return slices.Contains(seq, op.Seq) }
}

// MutationIndex matches the mutating operations with the given indexes.
func MutationIndex(n ...int64) Matcher {
	n = slices.Clone(n)
	return func(op Op) bool { return op.Mutation >= 0 && slices.Contains(n, op.Mutation) }
}

// MutationIndexFrom matches every mutating operation from index n on.
func MutationIndexFrom(n int64) Matcher {
	return func(op Op) bool { return op.Mutation >= n }
}

// Probability matches each operation independently with probability p,
// drawing from a generator seeded with seed: the same operation sequence
// gives the same choices.
func Probability(p float64, seed uint64) Matcher {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func(Op) bool {
		mu.Lock()
		defer mu.Unlock()
		return rng.Float64() < p
	}
}

// And matches when every m matches (and so when ms is empty).
func And(ms ...Matcher) Matcher {
	ms = slices.Clone(ms)
	return func(op Op) bool {
		for _, m := range ms {
			if m != nil && !m(op) {
				return false
			}
		}
		return true
	}
}

// Or matches when any m matches.
func Or(ms ...Matcher) Matcher {
	ms = slices.Clone(ms)
	return func(op Op) bool {
		for _, m := range ms {
			if m == nil || m(op) {
				return true
			}
		}
		return false
	}
}

// Not matches when m does not.
func Not(m Matcher) Matcher {
	return func(op Op) bool { return m != nil && !m(op) }
}

type actionKind uint8

const (
	actNone actionKind = iota
	actFail
	actDelay
	actDrop
	actHang
	actCorrupt
	actCrash
	actCall
)

// terminal reports whether an action ends the operation.
func (k actionKind) terminal() bool {
	return k == actFail || k == actDrop || k == actHang || k == actCrash
}

// An Action is what a Rule does to the operations it matches. Build one
// with Fail, Delay, Drop, Hang, Corrupt, Crash or Call.
type Action struct {
	kind    actionKind
	err     error
	delay   time.Duration
	crash   CrashOptions
	fn      func(Op)
	corrupt *corrupter
}

// Fail ends the operation with err, wrapped together with ErrInjected. A
// nil err means backend.ErrUnavailable.
func Fail(err error) Action {
	if err == nil {
		err = backend.ErrUnavailable
	}
	return Action{kind: actFail, err: err}
}

// Delay holds the operation for d before it goes on. If the context is
// done first the operation fails with the context's error, not applied.
func Delay(d time.Duration) Action { return Action{kind: actDelay, delay: d} }

// Drop makes a Put, Delete or WriteAt report success without doing
// anything: storage that lies. It does not apply to other operations.
func Drop() Action { return Action{kind: actDrop} }

// Hang blocks the operation until its context is done (or the store is
// closed), then fails it with the context's error and
// backend.ErrUnavailable, not applied.
func Hang() Action { return Action{kind: actHang} }

// Corrupt flips one bit of the data: in what ReadAt returns, or in what Put
// or WriteAt stores (while reporting success). The bit is chosen by a
// generator seeded with seed. It does not apply to other operations.
func Corrupt(seed uint64) Action {
	return Action{kind: actCorrupt, corrupt: &corrupter{rng: rand.New(rand.NewPCG(seed, 1))}}
}

// Crash takes a crash clone (see CrashClone) with the operation in flight
// and not yet applied, then crashes the store: this operation and every
// later one fail with ErrCrashed. Store.Crashed returns the clone.
func Crash(opts CrashOptions) Action { return Action{kind: actCrash, crash: opts} }

// Call runs fn while the operation is in flight: registered (a CrashClone
// taken by fn sees it in flight) but not yet applied. fn runs without the
// store's locks and may call the store, including CrashClone.
func Call(fn func(Op)) Action { return Action{kind: actCall, fn: fn} }

// appliesTo reports whether the action has any meaning for kind k.
func (a Action) appliesTo(k Kind) bool {
	switch a.kind {
	case actDrop:
		return k.Mutating()
	case actCorrupt:
		return k == OpReadAt || k == OpPut || k == OpWriteAt
	case actNone:
		return false
	}
	return true
}

type corrupter struct {
	mu  sync.Mutex
	rng *rand.Rand
}

// flip flips one bit of p, which must not be empty.
func (c *corrupter) flip(p []byte) {
	c.mu.Lock()
	i, bit := c.rng.IntN(len(p)), c.rng.IntN(8)
	c.mu.Unlock()
	p[i] ^= 1 << bit
}

// Rule pairs a Matcher with an Action.
type Rule struct {
	// Match selects operations; nil matches every operation.
	Match Matcher
	// Action is applied to the operations Match selects.
	Action Action
	// Times, when positive, retires the rule after it fired that many times.
	Times int64
}

// RuleID names a rule added to a Store.
type RuleID uint64

type rule struct {
	id   RuleID
	r    Rule
	hits int64
}

// wait blocks for d, or until ctx is done or stop is closed.
func wait(ctx context.Context, d time.Duration, stop <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-stop:
		return backend.ErrClosed
	}
}
