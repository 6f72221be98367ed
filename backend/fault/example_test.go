package fault_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/fault"
	"github.com/lunway/lunway/backend/mem"
)

// Crash a scripted workload at every mutation index and look at what
// survives each crash.
func Example_crashAtEveryMutation() {
	ctx := context.Background()
	workload := func(s backend.Store) error {
		for _, v := range []string{"v1", "v2", "v3"} {
			if err := s.Put(ctx, "superblock", []byte(v)); err != nil {
				return err
			}
		}
		return nil
	}
	for k := int64(0); ; k++ {
		fs := fault.New(mem.New(nil))
		fs.AddRule(fault.Rule{
			Match:  fault.MutationIndex(k),
			Action: fault.Crash(fault.CrashOptions{InFlight: fault.LoseInFlight}),
		})
		err := workload(fs)
		clone, crashed := fs.Crashed()
		if !crashed {
			fmt.Println("no mutation", k, "- done")
			break
		}
		p := make([]byte, 2)
		if _, rerr := clone.ReadAt(ctx, "superblock", p, 0); errors.Is(rerr, backend.ErrNotFound) {
			fmt.Printf("crash at %d (%v): no superblock\n", k, errors.Is(err, fault.ErrCrashed))
		} else {
			fmt.Printf("crash at %d (%v): superblock %s\n", k, errors.Is(err, fault.ErrCrashed), p)
		}
		fs.Close()
	}
	// Output:
	// crash at 0 (true): no superblock
	// crash at 1 (true): superblock v1
	// crash at 2 (true): superblock v2
	// no mutation 3 - done
}

// Make the store unavailable for a while, as a backend outage would.
func Example_outage() {
	ctx := context.Background()
	fs := fault.New(mem.New(nil))
	fs.SetAvailability(fault.Unavailable)
	err := fs.Put(ctx, "obj", []byte("x"))
	fmt.Println(errors.Is(err, backend.ErrUnavailable))
	fs.SetAvailability(fault.Available)
	fmt.Println(fs.Put(ctx, "obj", []byte("x")))
	st := fs.Stats()
	fmt.Println(st.Calls[fault.OpPut], st.Failed[fault.OpPut])
	// Output:
	// true
	// <nil>
	// 2 1
}
