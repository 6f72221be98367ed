// Package fault wraps a backend.Store to inject failures and to simulate
// crashes, for tests of the code above it (the block map above all).
//
// # Rules
//
// A Rule pairs a Matcher, which selects operations, with an Action:
//
//	fs := fault.New(mem.New(nil), nil)
//	fs.AddRule(fault.Rule{
//		Match:  fault.And(fault.Kinds(fault.OpPut), fault.NamePrefix("vol/map/")),
//		Action: fault.Fail(backend.ErrNoSpace),
//		Times:  1,
//	})
//
// Matchers select by kind (Kinds, Mutations, Reads), by object name
// (NamePrefix, NameGlob), by position (OpIndex, MutationIndex,
// MutationIndexFrom: the Nth operation or the Nth mutating operation of
// the store, counted from 0), or by chance (Probability, with a seed), and
// combine with And, Or and Not. A Matcher is a plain func(Op) bool, so a
// test can write its own.
//
// Actions either let the operation go on (Delay, which honours the
// context; Call, which runs a function while the operation is in flight)
// or end it (Fail, Drop, which pretends success and does nothing, Hang,
// which blocks until the context is done, Crash), and Corrupt flips a bit
// in the data read or written. For every operation the rules are consulted
// in the order they were added; every matching rule's action runs in that
// order until one ends the operation. Rules with Times > 0 retire after
// firing that many times.
//
// SetAvailability makes the whole store unavailable (every call fails with
// backend.ErrUnavailable, or hangs until its context is done) and brings it
// back; hung calls then proceed. Stats counts calls and injected faults by
// kind of operation.
//
// # Crashes
//
// Every Put, Delete and WriteAt of a backend.Store is durable when it
// returns, so what survives a crash is every completed mutation plus some
// outcome of the mutations in flight. CrashClone returns a new, independent
// Store holding exactly that: completed mutations, and for each mutation in
// flight the outcome that CrashOptions.InFlight selects:
//
//   - LoseInFlight: none of them happened (a Put that never completed
//     leaves the old object).
//   - CompleteInFlight: all of them happened (they completed but the
//     acknowledgement was lost).
//   - TearInFlight: each Put and Delete happened or not, and each WriteAt
//     left every 512-byte aligned sector it touches either new or old,
//     chosen by a generator seeded with CrashOptions.Seed.
//
// Dropped writes are not in the clone: the store lied about them.
//
// The Crash action takes such a clone at the moment a matching operation
// is in flight (before it reaches the inner store) and then fails that
// operation and every later one with ErrCrashed, as a dead process would
// never see them complete; Crashed returns the clone. A test can therefore
// crash a scripted workload at every mutation index k, one run per k:
//
//	for k := int64(0); ; k++ {
//		fs := fault.New(mem.New(nil), nil)
//		fs.AddRule(fault.Rule{Match: fault.MutationIndex(k),
//			Action: fault.Crash(fault.CrashOptions{InFlight: fault.TearInFlight, Seed: uint64(k)})})
//		workload(fs) // fails from mutation k on
//		clone, ok := fs.Crashed()
//		if !ok {
//			break // the workload made fewer than k+1 mutations
//		}
//		verify(clone)
//	}
//
// or in a single run, by calling CrashClone from a Call action on every
// mutation, which sees that mutation in flight.
//
// Crash clones of a store wrapping a mem.Store are cheap deep copies (and
// keep its Overwriter capability); any other inner store is copied through
// List and ReadAt into a new mem.Store.
package fault
