package main

// End-to-end tests of the lunway binary with real clients: libiscsi's
// iscsi-test-cu, qemu-img and qemu-io.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lunway/lunway/internal/conformance"
	"github.com/lunway/lunway/internal/testenv"
)

var (
	lunwayBin      string
	updateExpected = flag.Bool("update-expected", false, "add newly passing iscsi-test-cu tests to testdata/conformance/expected-pass.txt")
)

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "lunway-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lunwayBin = filepath.Join(dir, "lunway")
	build := exec.Command("go", "build", "-race", "-o", lunwayBin, ".")
	if testing.Short() {
		build = exec.Command("go", "build", "-o", lunwayBin, ".")
	}
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building lunway: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t testing.TB) int { return testenv.FreePort(t) }

// proc is a lunway serve process under test.
type proc struct {
	t       testing.TB
	dir     string // data dir
	cfgPath string
	ports   []int
	cmd     *exec.Cmd
	logMu   sync.Mutex
	log     bytes.Buffer
	done    chan struct{}
	exitErr error
}

// writeConfig writes a config into a fresh data directory. The YAML may
// use {{PORT0}}, {{PORT1}}... for free ports and {{DATA}} for the data dir.
func newDaemon(t testing.TB, yaml string, nports int) *proc {
	t.Helper()
	d := &proc{t: t, dir: t.TempDir()}
	for i := 0; i < nports; i++ {
		p := freePort(t)
		d.ports = append(d.ports, p)
		yaml = strings.ReplaceAll(yaml, fmt.Sprintf("{{PORT%d}}", i), fmt.Sprint(p))
	}
	yaml = strings.ReplaceAll(yaml, "{{DATA}}", d.dir)
	d.cfgPath = filepath.Join(d.dir, "test.yaml")
	if err := os.WriteFile(d.cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return d
}

// start runs `lunway serve --config` and waits until every port accepts.
func (d *proc) start() {
	d.t.Helper()
	d.cmd = exec.Command(lunwayBin, "serve", "--config", d.cfgPath)
	d.cmd.Stdout = d.writer()
	d.cmd.Stderr = d.writer()
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.done = make(chan struct{})
	go func() {
		d.exitErr = d.cmd.Wait()
		close(d.done)
	}()
	d.t.Cleanup(func() { d.stop() })
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range d.ports[:1] {
		for {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-d.done:
				d.t.Fatalf("lunway exited at start: %v\n%s", d.exitErr, d.logs())
			default:
			}
			if time.Now().After(deadline) {
				d.t.Fatalf("lunway did not listen on %d\n%s", p, d.logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

type lockedWriter struct{ d *proc }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.d.logMu.Lock()
	defer w.d.logMu.Unlock()
	return w.d.log.Write(p)
}

func (d *proc) writer() lockedWriter { return lockedWriter{d} }

func (d *proc) logs() string {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	return d.log.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (d *proc) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		if d.exitErr != nil {
			d.t.Errorf("lunway exited with %v after SIGTERM\n%s", d.exitErr, tail(d.logs(), 4000))
		}
	case <-time.After(60 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
		d.t.Errorf("lunway did not stop within 60s of SIGTERM\n%s", tail(d.logs(), 4000))
	}
	if strings.Contains(d.logs(), "DATA RACE") {
		d.t.Errorf("race detected in lunway:\n%s", d.logs())
	}
}

// kill9 kills the daemon with SIGKILL, as a crash.
func (d *proc) kill9() {
	d.cmd.Process.Kill()
	<-d.done
}

func (d *proc) url(port int, iqn string, lun int) string {
	return fmt.Sprintf("iscsi://127.0.0.1:%d/%s/%d", port, iqn, lun)
}

// writeRandomFile writes size bytes of pseudo-random data.
func writeRandomFile(t testing.TB, path string, size int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(uint64(size), 42))
	buf := make([]byte, 1<<20)
	for done := 0; done < size; done += len(buf) {
		for i := 0; i < len(buf); i += 8 {
			binary.LittleEndian.PutUint64(buf[i:], r.Uint64())
		}
		if _, err := f.Write(buf[:min(len(buf), size-done)]); err != nil {
			t.Fatal(err)
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

const e2eIQN = "iqn.2026-11.dev.lunway:e2e"

// conformanceConfig serves one target through two portal groups (for the
// MultipathIO tests), with LUN 0 of the given backend and LUN 1 read-only.
func conformanceConfig(backend string) string {
	return `
data_dir: {{DATA}}
log: {level: warn}
portal_groups:
  - {tag: 1, listen: ["127.0.0.1:{{PORT0}}"]}
  - {tag: 2, listen: ["127.0.0.1:{{PORT1}}"]}
targets:
  - name: ` + e2eIQN + `
    luns:
      - lun: 0
        size: 1GiB
        backend: ` + backend + `
      - lun: 1
        size: 64MiB
        read_only: true
        backend: {type: file, path: ro.img}
`
}

// runConformance runs the whole iscsi-test-cu suite against LUN 0 (with
// the multipath URL) and the ReadOnly family against LUN 1, and judges
// the results against the expected-pass list.
func runConformance(t *testing.T, backend string) {
	testenv.NeedCommand(t, "iscsi-test-cu", "libiscsi-bin")
	d := newDaemon(t, conformanceConfig(backend), 2)
	d.start()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	opts := conformance.Options{Dataloss: true, Multipath: d.url(d.ports[1], e2eIQN, 0),
		Initiator:  "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test",
		Initiator2: "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2"}
	res, out, err := conformance.Run(ctx, d.url(d.ports[0], e2eIQN, 0), opts)
	if err != nil {
		t.Fatalf("%v\n%s", err, tail(d.logs(), 4000))
	}
	opts.Test, opts.Multipath = "ALL.ReadOnly", ""
	ro, roOut, err := conformance.Run(ctx, d.url(d.ports[0], e2eIQN, 1), opts)
	if err != nil {
		t.Fatalf("read-only LUN: %v", err)
	}
	for k, v := range ro {
		res["ReadOnlyLUN."+k] = v
	}
	out = append(out, roOut...)
	if err := os.WriteFile(filepath.Join(d.dir, "iscsi-test-cu.log"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("iscsi-test-cu (%s): %s", backend, res.Summary())
	if fails := res.Names(conformance.Fail); len(fails) > 0 {
		t.Logf("failing: %s", strings.Join(fails, " "))
	}
	expPath := filepath.Join("testdata", "conformance", "expected-pass.txt")
	expected, err := conformance.LoadExpected(expPath)
	if err != nil {
		t.Fatal(err)
	}
	if reg := conformance.Regressions(res, expected); len(reg) > 0 {
		t.Errorf("%d tests of %s no longer pass:\n  %s\n(iscsi-test-cu output: %s)", len(reg), expPath,
			strings.Join(reg, "\n  "), filepath.Join(d.dir, "iscsi-test-cu.log"))
		t.Log(tail(string(out), 20000))
	}
	if np := conformance.NewPasses(res, expected); len(np) > 0 {
		if *updateExpected {
			f, err := os.OpenFile(expPath, os.O_APPEND|os.O_WRONLY, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(f, strings.Join(np, "\n"))
			f.Close()
			t.Logf("added %d tests to %s", len(np), expPath)
		} else {
			t.Logf("%d tests pass that %s does not list yet (run with -update-expected): %s",
				len(np), expPath, strings.Join(np, " "))
		}
	}
}

func TestConformanceFileLUN(t *testing.T) {
	testenv.Long(t)
	runConformance(t, "{type: file, path: lun0.img}")
}

func TestConformanceBlockmapLUN(t *testing.T) {
	testenv.Long(t)
	runConformance(t, "{type: blockmap, volume: vol0, store: {type: dir, path: store}}")
}

// qemuConfig serves a file LUN 0 and a blockmap LUN 1.
const qemuConfig = `
data_dir: {{DATA}}
log: {level: warn}
portal_groups: [{tag: 1, listen: ["127.0.0.1:{{PORT0}}"]}]
targets:
  - name: ` + e2eIQN + `
    luns:
      - {lun: 0, size: 512MiB, backend: {type: file, path: lun0.img}}
      - {lun: 1, size: 512MiB, backend: {type: blockmap, volume: vol1, store: {type: dir, path: store}}}
`

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(string(out), 4000))
	}
	return string(out)
}

// TestQEMURoundTrip copies a random 256 MiB image onto each LUN with
// qemu-img convert over iscsi:// and compares it back.
func TestQEMURoundTrip(t *testing.T) {
	testenv.NeedQEMU(t, "qemu-img")
	d := newDaemon(t, qemuConfig, 1)
	d.start()
	src := filepath.Join(t.TempDir(), "src.raw")
	size := 256 << 20
	if testing.Short() {
		size = 32 << 20
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

// TestQEMUIOParallel runs parallel aio writes and verified reads with qemu-io.
func TestQEMUIOParallel(t *testing.T) {
	testenv.NeedQEMU(t, "qemu-io")
	d := newDaemon(t, qemuConfig, 1)
	d.start()
	for lun := 0; lun < 2; lun++ {
		url := d.url(d.ports[0], e2eIQN, lun)
		var args []string
		for i := 0; i < 64; i++ {
			args = append(args, "-c", fmt.Sprintf("aio_write -P 0x%02x %d 64k", i+1, i*192<<10))
		}
		args = append(args, "-c", "aio_flush")
		for i := 0; i < 64; i++ {
			args = append(args, "-c", fmt.Sprintf("aio_read -P 0x%02x %d 64k", i+1, i*192<<10))
			args = append(args, "-c", fmt.Sprintf("aio_read -P 0 %d 128k", i*192<<10+64<<10))
		}
		args = append(args, "-c", "aio_flush")
		out := run(t, "qemu-io", append([]string{"-f", "raw"}, append(args, url)...)...)
		if strings.Contains(out, "Pattern verification failed") || strings.Contains(out, "failed") {
			t.Fatalf("LUN %d: qemu-io:\n%s", lun, tail(out, 4000))
		}
		if n := strings.Count(out, "read 65536/65536"); n != 64 {
			t.Fatalf("LUN %d: %d verified reads of 64, output:\n%s", lun, n, tail(out, 4000))
		}
	}
}

// TestKill9FlushedWritesSurvive writes a stream of patterns with periodic
// flushes through qemu-io, kills the daemon with SIGKILL in the middle,
// restarts it, and verifies every write acknowledged before the last
// completed flush.
func TestKill9FlushedWritesSurvive(t *testing.T) {
	testenv.NeedQEMU(t, "qemu-io")
	for lun := 0; lun < 2; lun++ {
		t.Run(fmt.Sprintf("lun%d", lun), func(t *testing.T) { kill9Run(t, lun) })
	}
}

func kill9Run(t *testing.T, lun int) {
	d := newDaemon(t, qemuConfig, 1)
	d.start()
	url := d.url(d.ports[0], e2eIQN, lun)
	const n, every, bs = 4000, 16, 16 << 10
	// stdbuf: qemu-io's stdout is block-buffered on a pipe; each "wrote"
	// line must arrive when its write completes.
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
	// Kill the daemon once a third of the writes completed.
	var lines []string
	sc := bufio.NewScanner(stdout)
	killed, acked := false, 0
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		if strings.Contains(line, "wrote ") {
			acked++
		}
		if !killed && acked >= n/3 {
			d.kill9()
			killed = true
			// libiscsi reconnects forever; every acknowledgement qemu-io
			// printed came before the kill, so give the pipe a moment to
			// drain, then stop qemu-io.
			time.AfterFunc(3*time.Second, func() { cmd.Process.Kill() })
		}
	}
	cmd.Wait()
	if !killed {
		t.Fatalf("the write stream finished before the kill; %d lines", len(lines))
	}
	// qemu-io runs commands in order: write i's "wrote" line appears after
	// every earlier flush completed. So a flush completed when a later
	// write completed.
	wrote := 0
	for _, l := range lines {
		if strings.Contains(l, "wrote ") {
			wrote++
		}
	}
	flushed := (wrote - 1) / every * every // writes covered by a completed flush
	if flushed < every {
		t.Fatalf("too few flushed writes (%d of %d wrote) to test anything", flushed, wrote)
	}
	t.Logf("killed after %d acknowledged writes; verifying the %d covered by a completed flush", wrote, flushed)
	d.start()
	var args []string
	for i := 0; i < flushed; i++ {
		args = append(args, "-c", fmt.Sprintf("read -P 0x%02x %d %d", i%250+1, int64(i)*bs, bs))
	}
	out := run(t, "qemu-io", append([]string{"-f", "raw"}, append(args, url)...)...)
	if strings.Contains(out, "Pattern verification failed") || strings.Count(out, "read ") != flushed {
		t.Fatalf("flushed data lost after kill -9:\n%s", tail(out, 4000))
	}
}

// TestBadConfigOneLine: bad configurations and a port in use give one clear
// line and a non-zero exit, never a stack trace, and create nothing.
func TestBadConfigOneLine(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name, yaml, want string
		code             int
	}{
		{"unknown field", "targets: [{name: iqn.2026-11.dev.x:a, lunz: []}]", "field lunz not found", 2},
		{"bad size", "targets: [{name: iqn.2026-11.dev.x:a, luns: [{lun: 0, size: 100, backend: {type: file, path: a.img}}]}]",
			"targets[0].luns[0].size", 2},
		{"bad name", "targets: [{name: 'IQN.X', luns: []}]", "targets[0].name", 2},
		{"port in use", "portal_groups: [{tag: 1, listen: ['" + busy.Addr().String() + "']}]\ntargets: [{name: iqn.2026-11.dev.x:a, luns: [{lun: 0, size: 1MiB, backend: {type: file, path: a.img}}]}]",
			"portal_groups[0].listen[0]: cannot listen on " + busy.Addr().String(), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "c.yaml")
			os.WriteFile(cfg, []byte("data_dir: "+filepath.Join(dir, "data")+"\n"+tc.yaml), 0o600)
			cmd := exec.Command(lunwayBin, "serve", "--config", cfg)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != tc.code {
				t.Fatalf("exit: %v, want code %d; stderr:\n%s", err, tc.code, stderr.String())
			}
			msg := strings.TrimSpace(stderr.String())
			if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, tc.want) || !strings.HasPrefix(msg, "lunway: ") {
				t.Fatalf("stderr is not one clear line containing %q:\n%s", tc.want, msg)
			}
			if _, err := os.Stat(filepath.Join(dir, "data", "a.img")); err == nil {
				t.Fatalf("a backing file was created despite the error")
			}
		})
	}
}

// TestDefaultServe runs `lunway serve` with no arguments in an empty
// directory: the embedded default on 127.0.0.1:3260.
func TestDefaultServe(t *testing.T) {
	testenv.NeedCommand(t, "iscsi-inq", "libiscsi-bin")
	if c, err := net.DialTimeout("tcp", "127.0.0.1:3260", time.Second); err == nil {
		c.Close()
		t.Fatalf("port 3260 is in use; TestDefaultServe needs it for the embedded default")
	}
	dir := t.TempDir()
	d := &proc{t: t, dir: dir, ports: []int{3260}}
	d.cmd = exec.Command(lunwayBin, "serve")
	d.cmd.Dir = dir
	d.cmd.Stdout, d.cmd.Stderr = d.writer(), d.writer()
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.done = make(chan struct{})
	go func() { d.exitErr = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(d.stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := exec.Command("iscsi-inq", "iscsi://127.0.0.1:3260/iqn.2026-11.dev.lunway:default/0").CombinedOutput()
		if err == nil && strings.Contains(string(out), "DIRECT_ACCESS") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("default target not reachable: %v %s\n%s", err, out, d.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	st, err := os.Stat(filepath.Join(dir, "lunway-data", "lun0.img"))
	if err != nil || st.Size() != 1<<30 {
		t.Fatalf("lunway-data/lun0.img: %v %v", st, err)
	}
	if blocks := st.Sys().(*syscall.Stat_t).Blocks; blocks > 1024 {
		t.Fatalf("lun0.img is not sparse: %d blocks", blocks)
	}
}
