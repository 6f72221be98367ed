//go:build ceph

package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lunway/lunway/internal/testenv"
)

// TestCephImportExport imports a qemu-img-made image onto an RBD LUN and
// onto a blockmap volume in RADOS, both offline through the daemon's
// configuration, exports them back, runs the volume tools on the RADOS
// volume, and compares both LUNs with the image once the daemon serves
// them.
func TestCephImportExport(t *testing.T) {
	testenv.NeedQEMU(t, "qemu-img")
	c := sharedCluster(t)
	cfg := fmt.Sprintf(`
data_dir: {{DATA}}
log: {level: warn}
portal_groups: [{tag: 1, listen: ["127.0.0.1:{{PORT0}}"]}]
targets:
  - name: %s
    luns:
      - {lun: 0, size: 24MiB, backend: %s}
      - {lun: 1, size: 24MiB, backend: %s}
`, imgIQN, c.rbdBackend(t, ""), c.radosBackend(t, ""))
	d := newDaemon(t, cfg, 1)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	writeSparseRaw(t, src, diskSize, diskData, diskZero, 6)
	img := makeImage(t, dir, src, qemuImage{"q", "qcow2", ""})
	for lun := range 2 {
		ref := fmt.Sprintf("lun:%s/%d", imgIQN, lun)
		out := lwOK(t, "import", "--verify", img, ref, "--config", d.cfgPath)
		t.Logf("LUN %d: %s", lun, strings.TrimSpace(out))
		back := filepath.Join(dir, fmt.Sprintf("back%d.raw", lun))
		lwOK(t, "export", "-q", ref, back, "--config", d.cfgPath)
		identical(t, "raw", back, "raw", src)
	}
	// The volume tools reach the RADOS store through the configuration.
	ref := "lun:" + imgIQN + "/1"
	if out := lwOK(t, "volume", "check", ref, "--config", d.cfgPath); !strings.Contains(out, "ok") {
		t.Fatalf("volume check: %s", out)
	}
	lwOK(t, "volume", "snapshot", ref, "s1", "--config", d.cfgPath)
	info := lwOK(t, "volume", "info", ref, "--config", d.cfgPath)
	if !strings.Contains(info, "s1") {
		t.Fatalf("volume info lacks the snapshot:\n%s", info)
	}
	d.start()
	for lun := range 2 {
		identical(t, "qcow2", img, "raw", d.url(d.ports[0], imgIQN, lun))
	}
}
