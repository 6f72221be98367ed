//go:build ceph

package rbd_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/lunway/lunway/backend/rados"
	"github.com/lunway/lunway/backend/rbd"
	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/internal/testenv"
)

// completion records the result of an asynchronous request.
type completion struct {
	at  chan time.Time
	err error
}

func newCompletion() *completion { return &completion{at: make(chan time.Time, 2)} }

func (c *completion) Done(err error) {
	c.err = err
	c.at <- time.Now()
}

func (c *completion) wait(t *testing.T, what string) (time.Time, error) {
	t.Helper()
	select {
	case at := <-c.at:
		select {
		case <-c.at:
			t.Fatalf("%s completed twice", what)
		case <-time.After(50 * time.Millisecond):
		}
		return at, c.err
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no completion in 30 s", what)
	}
	return time.Time{}, nil
}

// TestCephAsyncOutage stops the only OSD of a private cluster under
// requests started through AsyncIO: they end with ErrTimeout after
// IOTimeout, or with their context's error when it ends first, never
// later and never twice; when the OSD runs again the abandoned requests
// are reclaimed and I/O works.
func TestCephAsyncOutage(t *testing.T) {
	dir := testenv.PrivateCeph(t, "CEPH_WITH_RGW=0")
	o := rbd.Options{
		// librados' own op timeout is longer than IOTimeout, so that what
		// ends the requests is the device's watchdog.
		ConnOptions: rados.ConnOptions{ConfFile: filepath.Join(dir, "ceph.conf"), Keyring: filepath.Join(dir, "keyring"),
			OpTimeout: time.Minute},
		Pool: "rbd", Image: "outage", Create: true, SizeBytes: 16 << 20,
		IOTimeout: time.Second, MaxInFlight: 8,
	}
	ctx := t.Context()
	data := bytes.Repeat([]byte{0xab}, 64<<10)
	// Written through another handle, so that the device's reads are not
	// answered by librbd's cache.
	d0 := openDevice(t, o)
	for _, off := range []int64{0, 4 << 20} {
		if err := d0.WriteAt(ctx, data, off, blockdev.FUA); err != nil {
			t.Fatal(err)
		}
	}
	if err := d0.Close(); err != nil {
		t.Fatal(err)
	}
	d := openDevice(t, o)
	defer d.Close()
	pid := testenv.CephOSDPID(t, dir)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	cont := func() {
		if stopped {
			syscall.Kill(pid, syscall.SIGCONT)
			stopped = false
		}
	}
	defer cont()

	start := time.Now()
	read := newCompletion()
	buf := make([]byte, 4096)
	if !d.StartReadAt(ctx, buf, 0, read) {
		t.Fatal("StartReadAt refused with every slot free")
	}
	cctx, cancel := context.WithCancel(ctx)
	canceled := newCompletion()
	if !d.StartReadAt(cctx, make([]byte, 4096), 4<<20, canceled) {
		t.Fatal("StartReadAt refused with a slot free")
	}
	time.AfterFunc(200*time.Millisecond, cancel)

	at, err := canceled.wait(t, "the canceled read")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled read: %v, want context.Canceled", err)
	}
	if el := at.Sub(start); el > 900*time.Millisecond {
		t.Fatalf("canceled read completed after %v (cancel at 200ms)", el)
	}
	at, err = read.wait(t, "the read")
	if !errors.Is(err, rbd.ErrTimeout) || !errors.Is(err, blockdev.ErrUnavailable) {
		t.Fatalf("read during the outage: %v after %v, want ErrTimeout", err, at.Sub(start))
	}
	if el := at.Sub(start); el < time.Second || el > 3*time.Second {
		t.Fatalf("read timed out after %v (IOTimeout 1s)", el)
	}
	if st := d.Stats(); st.InFlight != 2 || st.Timeouts != 1 {
		t.Fatalf("during the outage: Stats = %+v, want 2 abandoned requests in flight, 1 timeout", st)
	}

	cont()
	for i := 0; d.Stats().InFlight != 0; i++ {
		if i == 300 {
			t.Fatalf("abandoned requests not reclaimed 30 s after the OSD returned: %+v", d.Stats())
		}
		time.Sleep(100 * time.Millisecond)
	}
	again := newCompletion()
	got := make([]byte, len(data))
	if !d.StartReadAt(ctx, got, 0, again) {
		t.Fatal("StartReadAt refused after the outage")
	}
	if _, err := again.wait(t, "the read after the outage"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("data written before the outage reads back different")
	}
}
