//go:build ceph

package main

// End-to-end tests of LUNs on Ceph through the real lunway binary: an RBD
// image LUN and a blockmap volume in RADOS, against the cluster `make
// test` starts (testenv.Ceph), plus a private cluster whose OSD is
// restarted under a running LUN.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	gorbd "github.com/ceph/go-ceph/rbd"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/rados"
	"github.com/lunway/lunway/internal/testenv"
)

// init makes TestMain build the daemon with this test binary's build tags
// (ceph,pacific), which `go build` otherwise leaves out.
func init() {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	for _, s := range bi.Settings {
		if s.Key == "-tags" && s.Value != "" && !strings.Contains(os.Getenv("GOFLAGS"), "-tags") {
			os.Setenv("GOFLAGS", strings.TrimSpace(os.Getenv("GOFLAGS")+" -tags="+s.Value))
		}
	}
}

// cephCluster is where a test's Ceph LUNs live.
type cephCluster struct {
	conf, keyring, pool string
}

func sharedCluster(t *testing.T) cephCluster {
	env := testenv.Ceph(t)
	return cephCluster{conf: env["CEPH_CONF"], keyring: env["CEPH_KEYRING"], pool: env["CEPH_POOL"]}
}

func (c cephCluster) connOptions() rados.ConnOptions {
	return rados.ConnOptions{ConfFile: c.conf, Keyring: c.keyring}
}

// cephYAML is the ceph section of a LUN's backend, plus extra keys.
func (c cephCluster) cephYAML(extra string) string {
	s := fmt.Sprintf("{conf_file: %s, keyring: %s, pool: %s", c.conf, c.keyring, c.pool)
	if extra != "" {
		s += ", " + extra
	}
	return s + "}"
}

func randomName(prefix string) string {
	var b [5]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// rbdBackend returns the YAML of an rbd backend on a new image, removed
// when the test ends.
func (c cephCluster) rbdBackend(t *testing.T, extra string) string {
	image := randomName("lw-e2e-")
	t.Cleanup(func() { c.removeImage(t, image) })
	return fmt.Sprintf("{type: rbd, image: %s, ceph: %s}", image, c.cephYAML(extra))
}

// radosBackend returns the YAML of a blockmap backend on a RADOS store in
// a new namespace, emptied when the test ends.
func (c cephCluster) radosBackend(t *testing.T, extra string) string {
	ns := randomName("lw-e2e-")
	t.Cleanup(func() { c.purge(t, ns) })
	return fmt.Sprintf("{type: blockmap, volume: vol, store: {type: rados, ceph: %s}}", c.cephYAML("namespace: "+ns+sep(extra)))
}

func sep(extra string) string {
	if extra == "" {
		return ""
	}
	return ", " + extra
}

func (c cephCluster) removeImage(t *testing.T, image string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := rados.Connect(ctx, &rados.ConnOptions{ConfFile: c.conf, Keyring: c.keyring})
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer conn.Close()
	io, err := conn.OpenIOContext(c.pool, "")
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer io.Destroy()
	// Every daemon of the test is gone by now, but one killed with
	// SIGKILL leaves its watch (and maybe the exclusive lock) on the image
	// until the OSD times the watch out (30 s), and removal waits for
	// that: blocklist the stale watchers as an operator would.
	if img, err := gorbd.OpenImage(io, image, gorbd.NoSnapshot); err == nil {
		ws, _ := img.ListWatchers()
		img.Close()
		self := int64(conn.Raw().GetInstanceID())
		for _, w := range ws {
			if w.Id == self {
				continue
			}
			cmd := fmt.Sprintf(`{"prefix": "osd blocklist", "blocklistop": "add", "addr": %q, "expire": 600.0}`, w.Addr)
			if _, st, err := conn.Raw().MonCommand([]byte(cmd)); err != nil {
				t.Logf("cleanup: blocklisting %s: %v %s", w.Addr, err, st)
			}
		}
	}
	for i := 0; ; i++ {
		err := gorbd.RemoveImage(io, image)
		if err == nil || errors.Is(err, gorbd.ErrNotFound) {
			return
		}
		if i == 10 {
			t.Errorf("cleanup: removing image %s: %v", image, err)
			return
		}
		time.Sleep(time.Second)
	}
}

func (c cephCluster) purge(t *testing.T, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := rados.Open(ctx, &rados.Options{ConnOptions: c.connOptions(), Pool: c.pool, Namespace: ns})
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer s.Close()
	var names []string
	s.List(ctx, "", func(oi backend.ObjectInfo) error { names = append(names, oi.Name); return nil })
	for _, n := range names {
		if err := s.Delete(ctx, n); err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
	}
}

// TestCephConformanceRBDLUN runs iscsi-test-cu against a LUN on an RBD
// image, judged against the same expected-pass list as the file LUN.
func TestCephConformanceRBDLUN(t *testing.T) {
	testenv.Long(t)
	runConformance(t, sharedCluster(t).rbdBackend(t, ""))
}

// TestCephConformanceRadosLUN runs iscsi-test-cu against a LUN on a
// blockmap volume living in RADOS, judged against the same list (about
// three and a half minutes on a single-node memstore cluster).
func TestCephConformanceRadosLUN(t *testing.T) {
	testenv.Long(t)
	runConformance(t, sharedCluster(t).radosBackend(t, ""))
}

// cephQEMUConfig serves an RBD LUN 0 and a RADOS volume LUN 1.
func cephQEMUConfig(t *testing.T, c cephCluster, size string) string {
	return `
data_dir: {{DATA}}
log: {level: info}
portal_groups: [{tag: 1, listen: ["127.0.0.1:{{PORT0}}"]}]
targets:
  - name: ` + e2eIQN + `
    luns:
      - {lun: 0, size: ` + size + `, backend: ` + c.rbdBackend(t, "") + `}
      - {lun: 1, size: ` + size + `, backend: ` + c.radosBackend(t, "") + `}
`
}

// TestCephQEMURoundTrip copies a random image onto each LUN with qemu-img
// over iscsi:// and compares it back.
func TestCephQEMURoundTrip(t *testing.T) {
	testenv.NeedQEMU(t, "qemu-img")
	d := newDaemon(t, cephQEMUConfig(t, sharedCluster(t), "128MiB"), 1)
	d.start()
	src := filepath.Join(t.TempDir(), "src.raw")
	size := 96 << 20
	if testing.Short() {
		size = 16 << 20
	}
	writeRandomFile(t, src, size)
	for lun := 0; lun < 2; lun++ {
		url := d.url(d.ports[0], e2eIQN, lun)
		run(t, "qemu-img", "convert", "-n", "-p", "-O", "raw", src, url)
		out := run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", src, url)
		if !strings.Contains(out, "identical") {
			t.Fatalf("LUN %d: qemu-img compare: %s", lun, out)
		}
	}
}

// TestCephKill9FlushedWritesSurvive kills the daemon with SIGKILL during a
// flushed write stream on each kind of Ceph LUN, restarts it and verifies
// every write a completed flush covered.
func TestCephKill9FlushedWritesSurvive(t *testing.T) {
	testenv.NeedQEMU(t, "qemu-io")
	c := sharedCluster(t)
	for _, kind := range []string{"rbd", "rados"} {
		t.Run(kind, func(t *testing.T) {
			backend := c.rbdBackend(t, "")
			if kind == "rados" {
				backend = c.radosBackend(t, "")
			}
			d := newDaemon(t, `
data_dir: {{DATA}}
log: {level: info}
portal_groups: [{tag: 1, listen: ["127.0.0.1:{{PORT0}}"]}]
targets: [{name: `+e2eIQN+`, luns: [{lun: 0, size: 128MiB, backend: `+backend+`}]}]
`, 1)
			const lun = 0
			d.start()
			flushed := writeStreamUntil(t, d, lun, 3000, 16, func(acked int) bool {
				if acked >= 1000 {
					d.kill9()
					return true
				}
				return false
			})
			d.start()
			verifyStream(t, d, lun, flushed)
		})
	}
}

// writeStreamUntil writes n patterned 16 KiB blocks through qemu-io with a
// flush after every `every` writes, calling stop with the number of
// acknowledged writes after each one; once stop returns true the stream
// is abandoned. It returns how many writes a completed flush covered.
func writeStreamUntil(t *testing.T, d *proc, lun, n, every int, stop func(acked int) bool) int {
	t.Helper()
	flushed, _ := writeStream(t, d, lun, n, every, stop)
	return flushed
}

// writeStream is writeStreamUntil that also returns qemu-io's output
// other than acknowledgements and prompts.
func writeStream(t *testing.T, d *proc, lun, n, every int, stop func(acked int) bool) (flushed int, other []string) {
	t.Helper()
	const bs = 16 << 10
	url := d.url(d.ports[0], e2eIQN, lun)
	cmd := exec.Command("stdbuf", "-oL", "qemu-io", "-f", "raw", url)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		w := bufio.NewWriter(stdin)
		for i := 0; i < n; i++ {
			fmt.Fprintf(w, "write -P 0x%02x %d %d\n", i%250+1, int64(i)*bs, bs)
			if (i+1)%every == 0 {
				fmt.Fprintf(w, "flush\n")
			}
		}
		w.Flush()
		stdin.Close()
	}()
	sc := bufio.NewScanner(stdout)
	stopped, acked := false, 0
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "wrote "):
			acked++
		case strings.Contains(line, " ops; "), strings.TrimSpace(strings.ReplaceAll(line, "qemu-io>", "")) == "":
		default:
			other = append(other, line)
		}
		if !stopped && stop(acked) {
			stopped = true
			// Every acknowledgement qemu-io printed came before stop
			// returned; let the pipe drain, then end qemu-io.
			time.AfterFunc(3*time.Second, func() { cmd.Process.Kill() })
		}
	}
	cmd.Wait()
	if !stopped {
		t.Fatalf("the write stream ended before it was stopped; %d acknowledged; other output:\n%s", acked, tail(strings.Join(other, "\n"), 2000))
	}
	// qemu-io runs commands in order: write i's line appears after every
	// earlier flush completed.
	flushed = (acked - 1) / every * every
	if flushed < every {
		t.Fatalf("too few flushed writes (%d of %d acknowledged) to test anything", flushed, acked)
	}
	t.Logf("stopped after %d acknowledged writes; %d covered by a completed flush", acked, flushed)
	return flushed, other
}

// verifyStream checks the first n blocks writeStreamUntil wrote.
func verifyStream(t *testing.T, d *proc, lun, n int) {
	t.Helper()
	const bs = 16 << 10
	url := d.url(d.ports[0], e2eIQN, lun)
	var args []string
	for i := 0; i < n; i++ {
		args = append(args, "-c", fmt.Sprintf("read -P 0x%02x %d %d", i%250+1, int64(i)*bs, bs))
	}
	out := run(t, "qemu-io", append([]string{"-f", "raw"}, append(args, url)...)...)
	if strings.Contains(out, "Pattern verification failed") || strings.Count(out, "read ") != n {
		t.Fatalf("flushed data lost:\n%s", tail(out, 4000))
	}
}

// TestCephStartupErrors: a missing keyring or a wrong pool stops the daemon
// with one clear line naming the LUN and the field; an unreachable
// monitor leaves the daemon serving with the LUN pending (BUSY) and one
// error line naming it, within the connect timeout.
func TestCephStartupErrors(t *testing.T) {
	c := sharedCluster(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.keyring")
	lun := func(ceph string) string {
		return "targets: [{name: iqn.2026-11.dev.x:a, luns: [{lun: 0, size: 64MiB, backend: {type: rbd, image: lw-never, ceph: " + ceph + "}}]}]"
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"missing keyring", lun(fmt.Sprintf("{conf_file: %s, keyring: %s, pool: %s}", c.conf, missing, c.pool)),
			"targets[0].luns[0].backend.ceph.keyring: " + missing + ": no such file or directory"},
		{"wrong key", lun(fmt.Sprintf("{conf_file: %s, keyring: %s, pool: %s}", c.conf, writeBadKeyring(t, dir), c.pool)),
			"targets[0].luns[0].backend.ceph.keyring: the monitors refused client.admin"},
		{"wrong pool", lun(fmt.Sprintf("{conf_file: %s, keyring: %s, pool: no-such-pool}", c.conf, c.keyring)),
			`targets[0].luns[0].backend.ceph.pool: "no-such-pool" does not exist`},
		{"rados store wrong pool", "targets: [{name: iqn.2026-11.dev.x:a, luns: [{lun: 0, size: 64MiB, backend: {type: blockmap, volume: v, store: {type: rados, ceph: " +
			fmt.Sprintf("{conf_file: %s, keyring: %s, pool: no-such-pool}", c.conf, c.keyring) + "}}}]}]",
			`targets[0].luns[0].backend.store: ceph.pool: "no-such-pool" does not exist`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(dir, "c.yaml")
			os.WriteFile(cfg, []byte("data_dir: "+filepath.Join(dir, "data")+"\nportal_groups: [{tag: 1, listen: ['127.0.0.1:0']}]\n"+tc.yaml), 0o600)
			cmd := exec.Command(lunwayBin, "serve", "--config", cfg)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			start := time.Now()
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit: %v, want code 2; stderr:\n%s", err, stderr.String())
			}
			msg := strings.TrimSpace(stderr.String())
			if strings.Count(msg, "\n") != 0 || !strings.HasPrefix(msg, "lunway: ") || !strings.Contains(msg, tc.want) {
				t.Fatalf("stderr is not one clear line containing %q:\n%s", tc.want, msg)
			}
			if took := time.Since(start); took > 20*time.Second {
				t.Errorf("took %v", took)
			}
		})
	}
	t.Run("unreachable monitor", func(t *testing.T) {
		testenv.NeedCommand(t, "iscsi-inq", "libiscsi-bin")
		testenv.NeedCommand(t, "iscsi-test-cu", "libiscsi-bin")
		d := newDaemon(t, `
data_dir: {{DATA}}
log: {level: info}
portal_groups: [{tag: 1, listen: ["127.0.0.1:{{PORT0}}"]}]
targets:
  - name: `+e2eIQN+`
    luns:
      - {lun: 0, size: 64MiB, backend: {type: rbd, image: lw-never, ceph: {mon_host: "127.0.0.1:1", keyring: `+c.keyring+`, pool: rbd, connect_timeout: 2s}}}
      - {lun: 1, size: 64MiB, backend: {type: file, path: ok.img}}
`, 1)
		start := time.Now()
		d.start()
		// The file LUN serves; the Ceph LUN exists and answers BUSY.
		out, err := exec.Command("iscsi-inq", d.url(d.ports[0], e2eIQN, 0)).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "DIRECT_ACCESS") {
			t.Fatalf("INQUIRY of the pending LUN: %v\n%s\n%s", err, out, d.logs())
		}
		tur := exec.Command("iscsi-test-cu", "--dataloss", "--test=SCSI.TestUnitReady.Simple", d.url(d.ports[0], e2eIQN, 1))
		if out, err := tur.CombinedOutput(); err != nil {
			t.Fatalf("the file LUN does not serve: %v\n%s", err, out)
		}
		if took := time.Since(start); took > 15*time.Second {
			t.Errorf("start with an unreachable monitor took %v", took)
		}
		logs := d.logs()
		if !strings.Contains(logs, "targets[0].luns[0].backend.ceph.mon_host") || !strings.Contains(logs, "no monitor answered") {
			t.Fatalf("no log line naming the LUN's mon_host:\n%s", logs)
		}
	})
}

func writeBadKeyring(t *testing.T, dir string) string {
	p := filepath.Join(dir, "bad.keyring")
	if err := os.WriteFile(p, []byte("[client.admin]\n\tkey = AQBfcWxnAAAAABAAbm90IGEgcmVhbCBrZXkgYXQgYWw=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startPrivateCeph starts a throwaway single-node cluster (see
// testenv.PrivateCeph); a radosgw stopped by a test is continued before
// the cluster is purged, since a stopped process cannot die of SIGTERM.
func startPrivateCeph(t *testing.T, settings ...string) string {
	t.Helper()
	dir := testenv.PrivateCeph(t, settings...)
	t.Cleanup(func() {
		if pid, err := rgwPID(dir); err == nil {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	})
	return dir
}

// privateCluster starts a throwaway cluster without radosgw.
func privateCluster(t *testing.T) (cephCluster, string) {
	t.Helper()
	// A stopped memstore OSD keeps its data only when it unmounts
	// cleanly, which fast shutdown skips.
	dir := startPrivateCeph(t, "CEPH_WITH_RGW=0", "CEPH_EXTRA_CONF=osd fast shutdown = false")
	return cephCluster{conf: filepath.Join(dir, "ceph.conf"), keyring: filepath.Join(dir, "keyring"), pool: "rbd"}, dir
}

// osdPID returns the OSD's pid from the cluster's pid file.
func osdPID(t *testing.T, dir string) int { return testenv.CephOSDPID(t, dir) }

// TestCephOSDRestart stops the only OSD of a private cluster for longer
// than the LUNs' operation timeout while qemu-io streams flushed writes to
// them, then starts it again: the stream resumes by itself (BUSY is
// retried by the initiator), the session stays up, and every write a
// completed flush covered is there afterwards.
func TestCephOSDRestart(t *testing.T) {
	testenv.NeedQEMU(t, "qemu-io")
	c, dir := privateCluster(t)
	yaml := `
data_dir: {{DATA}}
log: {level: info}
portal_groups: [{tag: 1, listen: ["127.0.0.1:{{PORT0}}"]}]
targets:
  - name: ` + e2eIQN + `
    luns:
      - {lun: 0, size: 128MiB, backend: ` + c.rbdBackend(t, "op_timeout: 5s") + `}
      - {lun: 1, size: 128MiB, backend: ` + c.radosBackend(t, "op_timeout: 5s") + `}
`
	d := newDaemon(t, yaml, 1)
	d.start()
	for lun := 0; lun < 2; lun++ {
		t.Run(fmt.Sprintf("lun%d", lun), func(t *testing.T) {
			var outage chan struct{}
			mark, ended := 0, 0
			flushed, other := writeStream(t, d, lun, 2000, 16, func(acked int) bool {
				switch {
				case acked == 300 && outage == nil:
					mark = len(d.logs())
					outage = make(chan struct{})
					go func() {
						defer close(outage)
						restartOSD(t, dir, 8*time.Second)
					}()
				case outage != nil && acked >= 1500:
					// The stream resumed by itself after the outage.
					ended = strings.Count(d.logs()[mark:], "session ended")
					return true
				}
				return false
			})
			<-outage
			if ended != 0 {
				t.Errorf("%d sessions ended during the outage:\n%s", ended, tail(d.logs()[mark:], 4000))
			}
			// The initiator saw BUSY (the outage outlasted op_timeout) and
			// nothing else.
			busy := 0
			for _, l := range other {
				if strings.Contains(l, ": BUSY") {
					busy++
				} else {
					t.Errorf("qemu-io: %s", l)
				}
			}
			if busy == 0 {
				t.Errorf("no BUSY during an outage longer than op_timeout")
			}
			t.Logf("%d BUSY retries during the outage", busy)
			verifyStream(t, d, lun, flushed)
		})
	}
	logs := d.logs()
	for _, bad := range []string{"LOGICAL UNIT NOT SUPPORTED", "panic"} {
		if strings.Contains(logs, bad) {
			t.Errorf("daemon log mentions %q:\n%s", bad, tail(logs, 4000))
		}
	}
}

// restartOSD stops the OSD (SIGTERM: memstore saves its data), waits, and
// starts it again as ceph-up.sh did.
func restartOSD(t *testing.T, dir string, down time.Duration) {
	pid := osdPID(t, dir)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Errorf("stopping the OSD: %v", err)
		return
	}
	for i := 0; i < 300 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("OSD stopped")
	time.Sleep(down)
	cmd := exec.Command("ceph-osd", "-c", filepath.Join(dir, "ceph.conf"), "-i", "0", "--osd-objectstore", "memstore")
	cmd.Env = testenv.CephUpEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("restarting the OSD: %v\n%s", err, out)
		return
	}
	t.Logf("OSD restarted")
}
