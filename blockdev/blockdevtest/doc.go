// Package blockdevtest is the conformance suite that every blockdev.Device
// and every Device decorator passes:
//
//	func TestConformance(t *testing.T) {
//		blockdevtest.Run(t, func(t *testing.T, sizeBytes int64) blockdev.Device {
//			d, err := mem.New(sizeBytes, nil)
//			if err != nil {
//				t.Fatal(err)
//			}
//			return d
//		}, nil)
//	}
//
// open must return a new, zero-filled, writable Device of exactly
// sizeBytes (the suite asks for multiples of 64 KiB); Run closes it when
// the subtest ends.
//
// The suite checks the Device contract: round trips at many alignments and
// sizes, zeros where nothing was written, ErrUnaligned and ErrOutOfRange
// before anything is touched, context cancellation, Flush and FUA, Close
// then ErrClosed, and Info's consistency with the capabilities (Thin
// implies Unmapper and AllocationStatuser). Each optional capability the
// Device implements is exercised: Unmap and WriteZeroes read back zeros
// and leave neighbours alone, AllocationStatus covers exactly the asked
// range without gaps and reports written data as mapped and deallocated
// ranges as zeros, Resize grows with zeros and shrinks (or refuses with
// ErrInUse), CompareAndWrite writes on a match, reports the first
// differing byte in a *MiscompareError otherwise and is atomic under
// concurrent increments, CopyRange copies or refuses with ErrNotSupported.
// Concurrent writers on disjoint ranges and concurrent readers run under
// -race, overlapping writers never tear a block, and a randomized model
// test diffs a random operation stream against a byte array (seed printed
// on failure, fixed with LUNWAY_BLOCKDEVTEST_SEED).
//
// Options add a durability check through a reopen hook (write with FUA,
// write and Flush, write without either; reopen; the first two survive and
// every block of the third is old or new), a read-only check, and an exact
// capability set for decorators.
package blockdevtest
