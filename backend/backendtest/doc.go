// Package backendtest is the conformance suite every backend.Store and every
// Store decorator passes, in the spirit of testing/fstest.TestFS:
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, func(t *testing.T) backend.Store {
//			return mem.New(nil)
//		})
//	}
//
// newStore is called once per subtest and must return an empty store; Run
// closes it when the subtest ends (a second Close is expected to fail with
// backend.ErrClosed and is not an error).
//
// Beyond the letter of backend.Store the suite pins down a few points the
// contract leaves open, because the block map relies on them:
//
//   - ReadAt that fills p exactly up to the end of the object returns nil,
//     not io.EOF; reading at or past the end returns (0, io.EOF).
//   - List's callback may call the store, including Delete.
//   - A second Close returns an error wrapping backend.ErrClosed.
//   - A zero-length WriteAt creates a missing object (empty) but never
//     extends an existing one.
//   - An operation whose context is already done returns an error wrapping
//     ctx.Err(), and a Put either happened completely or not at all.
//
// When the store implements backend.Overwriter the suite also checks
// WriteAt: creation, extension with zeros, overwrite in place, interplay
// with Put, and concurrent writers on disjoint sectors of one object.
//
// A randomized model test drives a random operation stream against a map
// model and diffs every result; its seed is printed on failure and can be
// fixed with LUNWAY_BACKENDTEST_SEED.
package backendtest
