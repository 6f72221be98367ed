package iscsi_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/blockdevtest"
	"github.com/lunway/lunway/blockdev/iscsi"
	"github.com/lunway/lunway/internal/testenv"
)

// tgt is a tgtd (the Linux SCSI target framework's user-space daemon)
// serving one target on loopback, its LUs on sparse files.
type tgt struct {
	t       *testing.T
	dir     string
	ctl     string // tgtd control port (its own management socket)
	addr    string
	iqn     string
	mu      sync.Mutex
	nextLUN int
}

func startTgt(t *testing.T) *tgt {
	testenv.NeedCommand(t, "tgtd", "tgt")
	testenv.NeedCommand(t, "tgtadm", "tgt")
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "tgtd needs root")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	// A control port of our own, so that other tgtd instances on the
	// machine (other tests, benchmarks) are never touched.
	g := &tgt{t: t, dir: t.TempDir(), ctl: strconv.Itoa(2000 + rand.IntN(20000)), addr: addr,
		iqn: "iqn.2026-11.dev.lunway:tgt-test", nextLUN: 1}
	cmd := exec.Command("tgtd", "-f", "-C", g.ctl, "--iscsi", "portal="+addr)
	log, err := os.Create(filepath.Join(g.dir, "tgtd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// tgtd ignores SIGTERM while it has targets.
		cmd.Process.Kill()
		cmd.Wait()
		log.Close()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := g.adm("--op", "show", "--mode", "target"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("tgtd did not start:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := g.adm("--op", "new", "--mode", "target", "--tid", "1", "-T", g.iqn); err != nil {
		t.Fatal(err)
	}
	if _, err := g.adm("--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"); err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *tgt) adm(args ...string) (string, error) {
	out, err := exec.Command("tgtadm", append([]string{"-C", g.ctl, "--lld", "iscsi"}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("tgtadm %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// newLU adds a thin LU on a new sparse file and returns its Target.
func (g *tgt) newLU(size int64, params string) iscsi.Target {
	g.t.Helper()
	g.mu.Lock()
	lun := g.nextLUN
	g.nextLUN++
	g.mu.Unlock()
	path := filepath.Join(g.dir, fmt.Sprintf("lun%d.img", lun))
	f, err := os.Create(path)
	if err != nil {
		g.t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		g.t.Fatal(err)
	}
	f.Close()
	l := strconv.Itoa(lun)
	if _, err := g.adm("--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", l, "-b", path); err != nil {
		g.t.Fatal(err)
	}
	if params != "" {
		if _, err := g.adm("--op", "update", "--mode", "logicalunit", "--tid", "1", "--lun", l, "--params", params); err != nil {
			g.t.Fatal(err)
		}
	}
	return iscsi.Target{Addr: g.addr, IQN: g.iqn, LUN: uint64(lun)}
}

// TestTgt runs the conformance suite against LUs of tgtd, another
// implementation of the target side.
func TestTgt(t *testing.T) {
	g := startTgt(t)
	targets := map[blockdev.Device]iscsi.Target{}
	var mu sync.Mutex
	open := func(t *testing.T, tg iscsi.Target) blockdev.Device {
		d, err := iscsi.Open(context.Background(), tg, nil)
		if err != nil {
			t.Fatalf("Open %s: %v", tg, err)
		}
		mu.Lock()
		targets[d] = tg
		mu.Unlock()
		return d
	}
	blockdevtest.Run(t, func(t *testing.T, size int64) blockdev.Device {
		return open(t, g.newLU(size, "thin_provisioning=1"))
	}, &blockdevtest.Options{
		SizeBytes: 1 << 20,
		ExactCaps: true,
		Caps:      blockdevtest.CapUnmap | blockdevtest.CapWriteZeroes | blockdevtest.CapAllocationStatus,
		Reopen: func(t *testing.T, d blockdev.Device) blockdev.Device {
			mu.Lock()
			tg := targets[d]
			mu.Unlock()
			if err := d.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return open(t, tg)
		},
		OpenReadOnly: func(t *testing.T, size int64) blockdev.Device {
			return open(t, g.newLU(size, "readonly=1"))
		},
	})
	// A thick LU (tgt's default): no UNMAP, no GET LBA STATUS.
	t.Run("thick", func(t *testing.T) {
		d := open(t, g.newLU(1<<20, ""))
		defer d.Close()
		if c := blockdevtest.Capabilities(d); c&(blockdevtest.CapUnmap|blockdevtest.CapAllocationStatus) != 0 || d.Info().Thin {
			t.Fatalf("thick tgt LU: capabilities %v, info %+v", c, d.Info())
		}
	})
}
