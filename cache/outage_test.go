package cache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"testing"
	"time"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/fault"
	"github.com/lunway/lunway/backend/mem"
	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/cache"
	"github.com/lunway/lunway/cache/cachetest"
)

func fill(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestOutage: with the store hanging, writes go on into the log until it
// is full, then wait and fail retryably; reads of logged and cached data
// work, reads that need the store fail retryably within the read timeout;
// health goes degraded, then unavailable; when the store returns,
// everything drains in order and health is ok again.
func TestOutage(t *testing.T) {
	for _, mode := range []fault.Availability{fault.Unavailable, fault.UnavailableHang} {
		t.Run(mode.String(), func(t *testing.T) {
			inner := fault.New(mem.New(&mem.Options{DisableOverwriter: true}))
			defer inner.Close()
			o := smallOptions(t.TempDir(), nil)
			o.LogBytes = 2 << 20
			o.LogFileBytes = 128 << 10
			o.ReadTimeout = 300 * time.Millisecond
			o.FullWait = 300 * time.Millisecond
			o.StallTimeout = 100 * time.Millisecond
			c := openCache(t, inner, o)
			ctx := t.Context()
			// Some data in the store and in the read cache first.
			if err := c.Put(ctx, "old", fill(50000, 1)); err != nil {
				t.Fatal(err)
			}
			// Put to the store directly: the cache has never seen it.
			if err := inner.Inner().Put(ctx, "cold", fill(1000, 2)); err != nil {
				t.Fatal(err)
			}
			if err := c.Drain(ctx); err != nil {
				t.Fatal(err)
			}
			p := make([]byte, 50000)
			if _, err := c.ReadAt(ctx, "old", p, 0); err != nil {
				t.Fatal(err)
			}
			if h := c.Health(); h != blockdev.Healthy {
				t.Fatalf("Health before the outage = %v", h)
			}

			inner.SetAvailability(mode)
			// Writes are absorbed until the log is full.
			var written []string
			var err error
			start := time.Now()
			for i := 0; ; i++ {
				name := fmt.Sprintf("new/%03d", i)
				if err = c.Put(ctx, name, fill(64<<10, byte(i))); err != nil {
					break
				}
				written = append(written, name)
				if i == 3 {
					waitFor(t, "degraded health", func() bool { return c.Health() == blockdev.Degraded })
				}
			}
			if !errors.Is(err, cache.ErrLogFull) || !errors.Is(err, backend.ErrUnavailable) {
				t.Fatalf("Put into a full log = %v; want ErrLogFull and ErrUnavailable", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("filling the log took %v", d)
			}
			if len(written) < 20 {
				t.Fatalf("only %d writes fit the log", len(written))
			}
			st := c.Stats()
			if !st.StoreFailing || st.PendingRecords < len(written) || st.RoomWaits == 0 || st.LogBytes > o.LogBytes {
				t.Fatalf("stats during the outage: %+v", st)
			}
			// A writer waiting for room makes health unavailable.
			waitErr := make(chan error, 1)
			go func() { waitErr <- c.Put(ctx, "waiting", fill(64<<10, 0)) }()
			waitFor(t, "unavailable health", func() bool { return c.Health() == blockdev.Unavailable })
			if err := <-waitErr; !errors.Is(err, cache.ErrLogFull) {
				t.Fatalf("second Put into a full log = %v", err)
			}

			// Reads: the log and the read cache serve; the store times out.
			q := make([]byte, 64<<10)
			if _, err := c.ReadAt(ctx, written[5], q, 0); err != nil || !bytes.Equal(q, fill(64<<10, 5)) {
				t.Fatalf("read from the log during the outage: %v", err)
			}
			if _, err := c.ReadAt(ctx, "old", p, 0); err != nil || !bytes.Equal(p, fill(50000, 1)) {
				t.Fatalf("read from the read cache during the outage: %v", err)
			}
			start = time.Now()
			_, err = c.ReadAt(ctx, "cold", make([]byte, 10), 0)
			if !errors.Is(err, backend.ErrUnavailable) {
				t.Fatalf("read that needs the store = %v; want ErrUnavailable", err)
			}
			if d := time.Since(start); d < o.ReadTimeout/2 || d > o.ReadTimeout+5*time.Second {
				t.Fatalf("read that needs the store failed after %v; read timeout %v", d, o.ReadTimeout)
			}

			// The store returns: everything drains in order.
			inner.SetAvailability(fault.Available)
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := c.Drain(dctx); err != nil {
				t.Fatal(err)
			}
			for i, name := range written {
				got := make([]byte, 64<<10)
				if _, err := inner.Inner().ReadAt(ctx, name, got, 0); err != nil || !bytes.Equal(got, fill(64<<10, byte(i))) {
					t.Fatalf("%s after the outage: %v", name, err)
				}
			}
			waitFor(t, "healthy", func() bool { return c.Health() == blockdev.Healthy })
			if st := c.Stats(); st.PendingRecords != 0 || st.StoreFailing {
				t.Fatalf("stats after the outage: %+v", st)
			}
		})
	}
}

// TestReadCache: chunks read from the store are served from memory and
// disk afterwards, uploads land in the disk tier, a store change
// invalidates, and the small disk tier evicts.
func TestReadCache(t *testing.T) {
	inner := mem.New(&mem.Options{DisableOverwriter: true})
	defer inner.Close()
	ctx := t.Context()
	// Objects put to the store directly are not in the cache.
	for i := range 8 {
		if err := inner.Put(ctx, fmt.Sprintf("o%d", i), fill(100<<10, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	o := smallOptions(t.TempDir(), nil)
	o.ReadDiskBytes = 256 << 10
	c := openCache(t, inner, o)
	p := make([]byte, 40<<10)
	read := func(name string, off int64, seed byte) {
		t.Helper()
		n, err := c.ReadAt(ctx, name, p, off)
		if err != nil || n != len(p) || !bytes.Equal(p, fill(100<<10, seed)[off:off+int64(len(p))]) {
			t.Fatalf("ReadAt(%s, %d) = %d, %v", name, off, n, err)
		}
	}
	read("o0", 1000, 0)
	st := c.Stats()
	if st.Misses == 0 || st.StoreReadBytes == 0 || st.MemHits+st.DiskHits != 0 {
		t.Fatalf("after the first read: %+v", st)
	}
	read("o0", 1000, 0)
	st2 := c.Stats()
	if st2.MemHits+st2.DiskHits == 0 || st2.Misses != st.Misses || st2.StoreReadBytes != st.StoreReadBytes {
		t.Fatalf("second read was not a hit: %+v", st2)
	}
	// Past the end: the short last chunk tells where the object ends.
	n, err := c.ReadAt(ctx, "o0", p, 100<<10-10)
	if n != 10 || err != io.EOF {
		t.Fatalf("read over the end = %d, %v", n, err)
	}
	// A Put through the cache replaces the object: the old chunks go.
	if err := c.Put(ctx, "o0", fill(100<<10, 99)); err != nil {
		t.Fatal(err)
	}
	if err := c.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	read("o0", 1000, 99)
	// Reading more than the disk tier holds evicts.
	for i := 1; i < 8; i++ {
		for off := int64(0); off+int64(len(p)) <= 100<<10; off += int64(len(p)) {
			read(fmt.Sprintf("o%d", i), off, byte(i))
		}
	}
	if st := c.Stats(); st.DiskEvictions == 0 {
		t.Fatalf("no disk evictions with %d bytes read through a %d-byte cache: %+v", 7*100<<10, o.ReadDiskBytes, st)
	}
}

// TestReplay: records left in the log at Close (the store was down) are
// uploaded by the next Open, and reads see them before that.
func TestReplay(t *testing.T) {
	fs := cachetest.NewCrashFS()
	inner := fault.New(mem.New(&mem.Options{DisableOverwriter: true}))
	defer inner.Close()
	ctx := t.Context()
	inner.SetAvailability(fault.Unavailable)
	c, err := cache.Open(ctx, inner, smallOptions("/c", fs))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := c.WriteAt(ctx, "seg", fill(1000, byte(i)), int64(i)*1000); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Put(ctx, "ckpt", []byte("root")); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "nothing"); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := inner.Inner().Stat(ctx, "seg"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("the store has seg during the outage: %v", err)
	}
	c, err = cache.Open(ctx, inner, smallOptions("/c", fs))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := make([]byte, 50000)
	for i := range 50 {
		copy(want[i*1000:], fill(1000, byte(i)))
	}
	got := make([]byte, 50000)
	if n, err := c.ReadAt(ctx, "seg", got, 0); err != nil || n != len(got) || !bytes.Equal(got, want) {
		t.Fatalf("read of a replayed object = %d, %v", n, err)
	}
	inner.SetAvailability(fault.Available)
	if err := c.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := inner.Inner().ReadAt(ctx, "seg", got, 0); err != nil || n != len(got) || !bytes.Equal(got, want) {
		t.Fatalf("uploaded object = %d, %v", n, err)
	}
	if st := c.Stats(); st.Uploads > 4 {
		t.Errorf("%d uploads for 3 objects: runs were not coalesced", st.Uploads)
	}
}

// TestTornTail: a crash in the middle of a record's write leaves a torn
// tail; Open cuts it off and keeps everything before it. Damage anywhere
// else fails Open.
func TestTornTail(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		name    string
		damage  func(b []byte) []byte
		wantErr bool
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)-5] }, false},
		{"bitflip-last", func(b []byte) []byte { b[len(b)-20] ^= 1; return b }, false},
		{"zeros-appended", func(b []byte) []byte { return append(b, make([]byte, 100)...) }, false},
		{"bitflip-first", func(b []byte) []byte { b[50] ^= 1; return b }, false}, // still the last file: everything after is cut
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := cachetest.NewCrashFS()
			inner := fault.New(mem.New(nil))
			defer inner.Close()
			inner.SetAvailability(fault.Unavailable)
			o := smallOptions("/c", fs)
			c, err := cache.Open(ctx, inner, o)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 5 {
				if err := c.Put(ctx, fmt.Sprintf("o%d", i), fill(100, byte(i))); err != nil {
					t.Fatal(err)
				}
			}
			c.Close()
			names, _ := fs.ReadDir("/c/log")
			if len(names) != 1 {
				t.Fatalf("log files %q", names)
			}
			damageFile(t, fs, path.Join("/c/log", names[0]), tc.damage)
			c, err = cache.Open(ctx, inner, o)
			if err != nil {
				t.Fatalf("Open after %s: %v", tc.name, err)
			}
			defer c.Close()
			inner.SetAvailability(fault.Available)
			if err := c.Drain(ctx); err != nil {
				t.Fatal(err)
			}
			var have int
			for i := range 5 {
				if _, err := c.Stat(ctx, fmt.Sprintf("o%d", i)); err == nil {
					have = i + 1
				} else if !errors.Is(err, backend.ErrNotFound) {
					t.Fatal(err)
				}
			}
			want := 4
			if tc.name == "zeros-appended" {
				want = 5
			}
			if tc.name == "bitflip-first" {
				want = 0
			}
			if have != want {
				t.Fatalf("%d objects survive, want %d", have, want)
			}
			// The log goes on after the cut.
			if err := c.Put(ctx, "after", []byte("x")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestDamagedLog: damage in a log file that is not the newest fails Open
// with ErrCorrupt instead of dropping acknowledged writes.
func TestDamagedLog(t *testing.T) {
	ctx := t.Context()
	fs := cachetest.NewCrashFS()
	inner := fault.New(mem.New(nil))
	defer inner.Close()
	inner.SetAvailability(fault.Unavailable)
	o := smallOptions("/c", fs)
	o.LogFileBytes = 64 << 10
	c, err := cache.Open(ctx, inner, o)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := c.Put(ctx, fmt.Sprintf("o%d", i), fill(40<<10, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	names, _ := fs.ReadDir("/c/log")
	if len(names) < 3 {
		t.Fatalf("log files %q", names)
	}
	damageFile(t, fs, path.Join("/c/log", names[0]), func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b })
	if _, err := cache.Open(ctx, inner, o); !errors.Is(err, backend.ErrCorrupt) {
		t.Fatalf("Open of a damaged log = %v; want ErrCorrupt", err)
	}
}

func damageFile(t *testing.T, fs cache.FS, name string, damage func([]byte) []byte) {
	t.Helper()
	f, err := fs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, _ := f.Size()
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	b = damage(b)
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
}

// TestLocked: one cache directory, one Cache.
func TestLocked(t *testing.T) {
	inner := mem.New(nil)
	defer inner.Close()
	dir := t.TempDir()
	openCache(t, inner, smallOptions(dir, nil))
	if _, err := cache.Open(t.Context(), inner, smallOptions(dir, nil)); !errors.Is(err, blockdev.ErrInUse) {
		t.Fatalf("second Open of %s = %v; want ErrInUse", dir, err)
	}
}

// TestBrokenDisk: when fdatasync fails the cache refuses writes (the log
// may have lost them) and reports unavailable; reads go on.
func TestBrokenDisk(t *testing.T) {
	fs := cachetest.NewCrashFS()
	inner := mem.New(nil)
	defer inner.Close()
	c := openCache(t, inner, smallOptions("/c", fs))
	ctx := t.Context()
	if err := c.Put(ctx, "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	fs.SetFailSync(errors.New("EIO"))
	if err := c.Put(ctx, "b", []byte("2")); !errors.Is(err, cache.ErrLogBroken) {
		t.Fatalf("Put with a failing disk = %v", err)
	}
	if err := c.Put(ctx, "c", []byte("3")); !errors.Is(err, cache.ErrLogBroken) {
		t.Fatalf("Put after the failure = %v", err)
	}
	if h := c.Health(); h != blockdev.Unavailable {
		t.Fatalf("Health = %v", h)
	}
	p := make([]byte, 1)
	if _, err := c.ReadAt(ctx, "a", p, 0); err != nil || p[0] != '1' {
		t.Fatalf("read after the failure = %q, %v", p, err)
	}
}

// TestUploadHold: an object growing by small appends is uploaded a few
// times, not once per append.
func TestUploadHold(t *testing.T) {
	inner := fault.New(mem.New(&mem.Options{DisableOverwriter: true}))
	defer inner.Close()
	o := smallOptions(t.TempDir(), nil)
	o.UploadHold = 200 * time.Millisecond
	c := openCache(t, inner, o)
	ctx := t.Context()
	const appends = 200
	start := time.Now()
	for i := range appends {
		if err := c.WriteAt(ctx, "seg", fill(4608, byte(i)), int64(i)*4608); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	if err := c.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	// About one upload per hold period while the appends go on, plus the
	// one Drain forces.
	puts := inner.Stats().Calls[fault.OpPut]
	if limit := int64(elapsed/o.UploadHold) + 3; puts > limit || puts > appends/4 {
		t.Fatalf("%d uploads for %d appends in %v (hold %v)", puts, appends, elapsed, o.UploadHold)
	}
	got := make([]byte, appends*4608)
	if _, err := inner.Inner().ReadAt(ctx, "seg", got, 0); err != nil {
		t.Fatal(err)
	}
	for i := range appends {
		if !bytes.Equal(got[i*4608:(i+1)*4608], fill(4608, byte(i))) {
			t.Fatalf("append %d differs", i)
		}
	}
}

// TestLargePut: an object too large for the log goes to the store after
// what the log holds before it, and reads see it.
func TestLargePut(t *testing.T) {
	inner := fault.New(mem.New(&mem.Options{DisableOverwriter: true}))
	defer inner.Close()
	var order []string
	inner.AddRule(fault.Rule{Match: fault.Mutations(), Action: fault.Call(func(op fault.Op) { order = append(order, op.Name) })})
	o := smallOptions(t.TempDir(), nil)
	o.LogBytes = 2 << 20
	o.LogFileBytes = 256 << 10
	c := openCache(t, inner, o)
	ctx := t.Context()
	if err := c.Put(ctx, "small", []byte("s")); err != nil {
		t.Fatal(err)
	}
	big := fill(3<<20, 5)
	if err := c.Put(ctx, "big", big); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.DirectPuts != 1 {
		t.Fatalf("DirectPuts = %d", st.DirectPuts)
	}
	if len(order) != 2 || order[0] != "small" || order[1] != "big" {
		t.Fatalf("store mutations %q; want [small big]", order)
	}
	got := make([]byte, len(big))
	if _, err := c.ReadAt(ctx, "big", got, 0); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read of the big object: %v", err)
	}
}

// TestCloseDrain: Close waits for pending uploads up to CloseDrain.
func TestCloseDrain(t *testing.T) {
	inner := fault.New(mem.New(&mem.Options{DisableOverwriter: true}))
	defer inner.Close()
	inner.AddRule(fault.Rule{Match: fault.Mutations(), Action: fault.Delay(20 * time.Millisecond)})
	o := smallOptions(t.TempDir(), nil)
	o.CloseDrain = 10 * time.Second
	c, err := cache.Open(t.Context(), inner, o)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := c.Put(t.Context(), fmt.Sprintf("o%d", i), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := inner.Inner().(mem.Store).Usage(); n != 10 {
		t.Fatalf("%d objects in the store after Close, want 10", n)
	}
}

// TestOutageGrowingObject: an object that grows by WriteAt (a blockmap
// volume's open segment) was partly uploaded before the store began to
// hang; its next upload hangs with it. Reads of the uploaded part come
// from the read cache, and reads of the new part from the log: neither
// waits for the store.
func TestOutageGrowingObject(t *testing.T) {
	inner := fault.New(mem.New(&mem.Options{DisableOverwriter: true}))
	defer inner.Close()
	o := smallOptions(t.TempDir(), nil)
	o.ReadTimeout = 5 * time.Second
	o.StallTimeout = 100 * time.Millisecond
	c := openCache(t, inner, o)
	ctx := t.Context()
	const piece = 40 << 10 // not a multiple of the chunk
	first := fill(3*piece, 9)
	for i := 0; i < 3; i++ {
		if err := c.WriteAt(ctx, "seg", first[i*piece:(i+1)*piece], int64(i*piece)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	inner.SetAvailability(fault.UnavailableHang)
	second := fill(piece, 77)
	if err := c.WriteAt(ctx, "seg", second, 3*piece); err != nil {
		t.Fatal(err)
	}
	// The uploader is now stuck on "seg".
	waitFor(t, "the store to be failing", func() bool { return c.Stats().StoreFailing })
	calls := inner.Stats().Calls[fault.OpReadAt]
	start := time.Now()
	got := make([]byte, 4*piece)
	if _, err := c.ReadAt(ctx, "seg", got, 0); err != nil {
		t.Fatalf("read of a growing object during the outage: %v", err)
	}
	if d := time.Since(start); d > o.ReadTimeout/2 {
		t.Fatalf("the read took %v: it waited for the store", d)
	}
	if !bytes.Equal(got[:3*piece], first) || !bytes.Equal(got[3*piece:], second) {
		t.Fatal("read of a growing object during the outage returned wrong data")
	}
	if n := inner.Stats().Calls[fault.OpReadAt]; n != calls {
		t.Fatalf("the read asked the store %d times", n-calls)
	}
	info, err := c.Stat(ctx, "seg")
	if err != nil || info.Size != 4*piece {
		t.Fatalf("Stat during the outage = %+v, %v", info, err)
	}
	inner.SetAvailability(fault.Available)
	if err := c.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	all := make([]byte, 4*piece)
	if _, err := inner.Inner().ReadAt(ctx, "seg", all, 0); err != nil || !bytes.Equal(all, append(first, second...)) {
		t.Fatalf("the store after the outage: %v", err)
	}
	if _, err := c.ReadAt(ctx, "seg", got, 0); err != nil || !bytes.Equal(got, all) {
		t.Fatalf("read after the outage: %v", err)
	}
}
