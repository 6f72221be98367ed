package blockmap_test

import (
	"bytes"
	"context"
	"fmt"

	"github.com/lunway/lunway/backend/mem"
	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockmap"
)

// A volume, a snapshot and a writable clone of it, on one store.
func Example() {
	ctx := context.Background()
	store := mem.New(nil)
	defer store.Close()

	v, err := blockmap.Create(ctx, store, "vm1", 1<<30, nil)
	if err != nil {
		panic(err)
	}
	defer v.Close()
	if err := v.WriteAt(ctx, bytes.Repeat([]byte("a"), 4096), 0, blockdev.FUA); err != nil {
		panic(err)
	}
	if err := v.Snapshot(ctx, "golden"); err != nil {
		panic(err)
	}
	c, err := blockmap.Clone(ctx, store, "vm1", "golden", "vm2", nil)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	if err := c.WriteAt(ctx, bytes.Repeat([]byte("b"), 4096), 0, 0); err != nil {
		panic(err)
	}

	p := make([]byte, 4096)
	q := make([]byte, 4096)
	if err := v.ReadAt(ctx, p, 0); err != nil {
		panic(err)
	}
	if err := c.ReadAt(ctx, q, 0); err != nil {
		panic(err)
	}
	fmt.Printf("vm1 reads %q, vm2 reads %q, vm2 is a clone of %s\n", p[0], q[0], c.Describe().Origin)
	if _, err := c.Check(ctx); err != nil {
		panic(err)
	}
	// Output: vm1 reads 'a', vm2 reads 'b', vm2 is a clone of vm1@golden
}
