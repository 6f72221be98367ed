package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/mem"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"github.com/lunway/lunway/target/scsi"
)

func testConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	c.DataDir = t.TempDir()
	c.Portals = []config.Portal{{Tag: 1, Listen: []string{"127.0.0.1:0"}}}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func readBlock(lu *scsi.LU) error {
	return lu.Device().ReadAt(context.Background(), make([]byte, 512), 0)
}

// TestPendingLUN: a LUN whose backend is unreachable at start is served as
// BUSY with its identity, the other LUNs serve, and when the backend comes
// back the real device is swapped in without the LUN ever missing.
func TestPendingLUN(t *testing.T) {
	cfg := testConfig(t, `
targets:
  - name: iqn.2026-11.dev.lunway:t
    luns:
      - {lun: 0, size: 1MiB, backend: {type: file, path: a.img}}
      - {lun: 1, size: 2MiB, backend: {type: rbd, image: img, ceph: {mon_host: 127.0.0.1, pool: p}}}
`)
	d, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	var tries atomic.Int32
	d.testOpen = func(cfg *config.Config, lc config.LUN, field string) (*openedBackend, error) {
		if lc.Backend.Type == "file" {
			return openFile(context.Background(), cfg, lc, field)
		}
		if tries.Add(1) <= 2 {
			return nil, fmt.Errorf("%s: monitor down: %w", field, blockdev.ErrUnavailable)
		}
		dev, err := mem.New(int64(lc.Size), nil)
		return &openedBackend{dev: dev, key: backendKey(cfg, lc)}, err
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown(context.Background())
	d.mu.Lock()
	tg := d.mu.targets["iqn.2026-11.dev.lunway:t"]
	d.mu.Unlock()
	if lu := tg.scsi.LU(0); lu == nil || readBlock(lu) != nil {
		t.Fatalf("LUN 0 not serving")
	}
	first := tg.scsi.LU(1)
	if first == nil {
		t.Fatal("pending LUN 1 is missing")
	}
	if err := readBlock(first); !errors.Is(err, blockdev.ErrUnavailable) {
		t.Fatalf("pending LUN read: %v, want ErrUnavailable", err)
	}
	if got := first.Device().Info().SizeBytes; got != 2<<20 {
		t.Fatalf("pending LUN size %d", got)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		lu := tg.scsi.LU(1)
		if lu == nil {
			t.Fatal("LUN 1 went missing during the swap")
		}
		if lu != first && readBlock(lu) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("LUN 1 never came back (%d tries)", tries.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The identity survived the swap.
	ids, err := openIdentityStore(filepath.Join(cfg.DataDir, "identity.json"))
	if err != nil {
		t.Fatal(err)
	}
	id, ok := ids.lookup(backendKey(cfg, cfg.Targets[0].LUNs[1]))
	if !ok || id.SizeBytes != 2<<20 {
		t.Fatalf("identity of LUN 1: %+v %v", id, ok)
	}
}

// TestIdentityStable: the same backing keeps its NAA and serial across
// restarts; explicit values win.
func TestIdentityStable(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "identity.json")
	s, err := openIdentityStore(p)
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.get("file:/x", &config.LUN{})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := a.NAABytes(); b[0]>>4 != 6 {
		t.Fatalf("not NAA 6: %s", a.NAA)
	}
	s2, err := openIdentityStore(p)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s2.get("file:/x", &config.LUN{})
	if a != b {
		t.Fatalf("identity changed across reopen: %+v %+v", a, b)
	}
	c, _ := s2.get("file:/y", &config.LUN{})
	if c.NAA == a.NAA || c.Serial == a.Serial {
		t.Fatalf("two backings share an identity")
	}
	explicit := "6" + "0123456789abcdef0123456789abcde"
	e, err := s2.get("file:/x", &config.LUN{NAA: explicit, Serial: "S1"})
	if err != nil || e.NAA != explicit || e.Serial != "S1" {
		t.Fatalf("explicit identity: %+v %v", e, err)
	}
	if _, err := s2.get("file:/z", &config.LUN{NAA: "1" + explicit[1:]}); err == nil {
		t.Fatalf("a non-NAA-6 designator was accepted")
	}
	os.WriteFile(p, []byte("{garbage"), 0o600)
	if _, err := openIdentityStore(p); err == nil {
		t.Fatal("corrupt identity.json accepted")
	}
}
