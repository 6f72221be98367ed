package iscsi_test

import (
	"sync"
	"testing"

	"github.com/lunway/lunway/target/iscsi"
	"github.com/lunway/lunway/target/iscsitest"
)

// TestCmdSNWindow runs many more concurrent commands than the queue depth:
// the initiator waits for the window, which never exceeds the depth.
func TestCmdSNWindow(t *testing.T) {
	const depth = 4
	srv := iscsitest.Start(t, &iscsitest.Options{Server: iscsi.Options{QueueDepth: depth}})
	s := dial(t, srv, nil)
	ctx := ctxT(t)
	next, exp, maxSN := s.CmdSNs()
	if int32(maxSN-exp)+1 != depth || next != exp {
		t.Fatalf("after login: next %d exp %d max %d", next, exp, maxSN)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	widest := int32(0)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for i := 0; i < 20; i++ {
				res, err := s.Read16(ctx, 0, uint64(w*8), 512, buf)
				if err != nil || res.Err() != nil {
					t.Errorf("read: %v", err)
					return
				}
				_, exp, maxSN := s.CmdSNs()
				mu.Lock()
				widest = max(widest, int32(maxSN-exp)+1)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if widest > depth {
		t.Fatalf("window of %d commands advertised with queue depth %d", widest, depth)
	}
}
