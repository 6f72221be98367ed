//go:build ceph

package main

// End-to-end tests of blockmap LUNs on S3 (radosgw) through the real
// lunway binary, with and without the local cache: libiscsi conformance,
// kill -9 in the middle of a flushed write stream, and a 60-second
// radosgw outage under a running qemu-io workload on a private cluster.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/s3"
	"github.com/lunway/lunway/blockmap"
	"github.com/lunway/lunway/internal/testenv"
)

// rgw is a radosgw endpoint with an S3 user.
type rgw struct {
	endpoint, accessKey, secretKey string
}

func sharedRGW(t *testing.T) rgw {
	t.Helper()
	env := testenv.Ceph(t)
	if env["CEPH_RGW_ENDPOINT"] == "" {
		testenv.Unavailable(t, "the Ceph cluster has no radosgw (start it with CEPH_WITH_RGW=1)")
	}
	return rgw{env["CEPH_RGW_ENDPOINT"], env["CEPH_S3_ACCESS_KEY"], env["CEPH_S3_SECRET_KEY"]}
}

// bucketName returns a fresh bucket name for a test.
func bucketName() string { return fmt.Sprintf("lunway-e2e-%x", rand.Uint64()) }

// s3YAML is a store section for bucket on r.
func (r rgw) s3YAML(bucket string) string {
	return fmt.Sprintf("{type: s3, s3: {endpoint: %q, bucket: %s, path_style: true, create_bucket: true, access_key: %s, secret_key: %s}}",
		r.endpoint, bucket, r.accessKey, r.secretKey)
}

// store opens bucket directly, for checks behind the daemon's back, and
// deletes the test's objects when the test ends.
func (r rgw) store(t *testing.T, bucket string) *s3.Store {
	t.Helper()
	st, err := s3.Open(context.Background(), &s3.Options{Endpoint: r.endpoint, Bucket: bucket, PathStyle: true,
		AccessKey: r.accessKey, SecretKey: r.secretKey, CreateBucket: true})
	if err != nil {
		t.Fatalf("s3.Open(%s): %v", bucket, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var names []string
		st.List(ctx, "", func(oi backend.ObjectInfo) error { names = append(names, oi.Name); return nil })
		for _, n := range names {
			st.Delete(ctx, n)
		}
		st.Close()
	})
	return st
}

// s3Backend is a blockmap LUN backend on bucket, with a cache in
// cacheDir when it is not empty.
func (r rgw) s3Backend(bucket, volume, cacheDir, cacheExtra string) string {
	b := fmt.Sprintf("{type: blockmap, volume: %s, store: %s", volume, r.s3YAML(bucket))
	if cacheDir != "" {
		b += fmt.Sprintf(", cache: {path: %s, size: 512MiB, read_size: 64MiB, mem_read_size: 32MiB%s}", cacheDir, sep(cacheExtra))
	}
	return b + "}"
}

// checkS3Volume opens the volume from the bucket alone (no cache), runs
// Check and verifies the first n blocks of a write stream.
func checkS3Volume(t *testing.T, st backend.Store, volume string, n int) {
	t.Helper()
	ctx := context.Background()
	v, err := blockmap.Open(ctx, st, volume, &blockmap.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("opening %s from the bucket alone: %v", volume, err)
	}
	defer v.Close()
	if rep, err := v.Check(ctx); err != nil {
		t.Fatalf("Check of %s in the bucket: %v (problems %q)", volume, err, rep.Problems)
	}
	const bs = 16 << 10
	buf := make([]byte, bs)
	for i := 0; i < n; i++ {
		if err := v.ReadAt(ctx, buf, int64(i)*bs); err != nil {
			t.Fatalf("reading block %d from the bucket: %v", i, err)
		}
		want := byte(i%250 + 1)
		for j, c := range buf {
			if c != want {
				t.Fatalf("block %d in the bucket: byte %d is %#x, want %#x", i, j, c, want)
			}
		}
	}
}

// TestS3ConformanceLUN runs libiscsi's suite on a blockmap LUN on radosgw
// behind a local cache.
func TestS3ConformanceLUN(t *testing.T) {
	testenv.Long(t)
	r := sharedRGW(t)
	bucket := bucketName()
	r.store(t, bucket)
	runConformance(t, r.s3Backend(bucket, "vol0", "cache0", ""))
}

// TestS3QEMURoundTrip copies an image onto S3 LUNs with and without a
// cache with qemu-img over iscsi:// and compares it back, then checks the
// volumes in the bucket alone.
func TestS3QEMURoundTrip(t *testing.T) {
	testenv.NeedQEMU(t, "qemu-img")
	r := sharedRGW(t)
	bucket := bucketName()
	st := r.store(t, bucket)
	d := newDaemon(t, `
data_dir: {{DATA}}
log: {level: warn}
portal_groups: [{tag: 1, listen: ["127.0.0.1:{{PORT0}}"]}]
targets:
  - name: `+e2eIQN+`
    luns:
      - {lun: 0, size: 64MiB, backend: `+r.s3Backend(bucket, "cached", "cache0", "")+`}
      - {lun: 1, size: 64MiB, backend: `+r.s3Backend(bucket, "direct", "", "")+`}
`, 1)
	d.start()
	src := filepath.Join(t.TempDir(), "src.raw")
	writeRandomFile(t, src, 24<<20)
	for lun := 0; lun < 2; lun++ {
		url := d.url(d.ports[0], e2eIQN, lun)
		run(t, "qemu-img", "convert", "-n", "-O", "raw", src, url)
		if out := run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", src, url); !strings.Contains(out, "identical") {
			t.Fatalf("LUN %d: qemu-img compare: %s", lun, out)
		}
	}
	d.stop()
	for _, vol := range []string{"cached", "direct"} {
		v, err := blockmap.Open(context.Background(), st, vol, &blockmap.Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("%s from the bucket alone: %v", vol, err)
		}
		if rep, err := v.Check(context.Background()); err != nil {
			t.Fatalf("Check(%s): %v %q", vol, err, rep.Problems)
		}
		v.Close()
	}
}

// TestS3Kill9FlushedWritesSurvive kills the daemon with SIGKILL at random
// points of a flushed write stream to a cached S3 LUN (the local log
// partly written, uploads partly done), restarts it, and checks that every
// write a completed flush covered is there, through the LUN and, once the
// backlog is uploaded, in the bucket alone (where Check must pass).
func TestS3Kill9FlushedWritesSurvive(t *testing.T) {
	testenv.NeedQEMU(t, "qemu-io")
	r := sharedRGW(t)
	bucket := bucketName()
	st := r.store(t, bucket)
	d := newDaemon(t, `
data_dir: {{DATA}}
log: {level: warn}
portal_groups: [{tag: 1, listen: ["127.0.0.1:{{PORT0}}"]}]
targets:
  - name: `+e2eIQN+`
    luns:
      - {lun: 0, size: 128MiB, backend: `+r.s3Backend(bucket, "k9", "cache0", "upload_hold: 50ms")+`}
`, 1)
	d.start()
	flushed := 0
	for round := 0; round < 3; round++ {
		stopAt := 300 + rand.IntN(900)
		f := writeStreamUntil(t, d, 0, 4000, 16, func(acked int) bool {
			if acked >= stopAt {
				d.kill9()
				return true
			}
			return false
		})
		flushed = max(flushed, f)
		d.start()
		verifyStream(t, d, 0, flushed)
	}
	d.stop() // a clean stop uploads the rest (up to 10 s)
	checkS3Volume(t, st, "k9", flushed)
}

// TestS3StartWhileUnreachable: a LUN whose S3 endpoint does not answer at
// start is served (BUSY) while the daemon runs its other LUNs.
func TestS3StartWhileUnreachable(t *testing.T) {
	testenv.NeedCommand(t, "iscsi-inq", "libiscsi-bin")
	dead := rgw{endpoint: fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), accessKey: "AK", secretKey: "SK"}
	d := newDaemon(t, `
data_dir: {{DATA}}
log: {level: info}
portal_groups: [{tag: 1, listen: ["127.0.0.1:{{PORT0}}"]}]
targets:
  - name: `+e2eIQN+`
    luns:
      - {lun: 0, size: 64MiB, backend: {type: file, path: lun0.img}}
      - {lun: 1, size: 64MiB, backend: `+dead.s3Backend("b", "v", "cache1", "")+`}
`, 1)
	d.start()
	for lun := 0; lun < 2; lun++ {
		out, err := exec.Command("iscsi-inq", d.url(d.ports[0], e2eIQN, lun)).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "DIRECT_ACCESS") {
			t.Fatalf("LUN %d: iscsi-inq: %v\n%s\n%s", lun, err, out, tail(d.logs(), 3000))
		}
	}
	if !strings.Contains(d.logs(), "LUN backend unavailable") {
		t.Fatalf("no pending-LUN line in the log:\n%s", tail(d.logs(), 3000))
	}
}

// privateRGW starts a throwaway cluster with radosgw on ports of its own,
// stopped when the test ends; it returns the endpoint and the cluster
// directory (for radosgw's pid file).
func privateRGW(t *testing.T) (rgw, string) {
	t.Helper()
	testenv.NeedCommand(t, "radosgw", "radosgw")
	dir := startPrivateCeph(t, "CEPH_RGW_PORT="+strconv.Itoa(freePort(t)), "CEPH_WITH_RGW=1")
	env := map[string]string{}
	data, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return rgw{env["CEPH_RGW_ENDPOINT"], env["CEPH_S3_ACCESS_KEY"], env["CEPH_S3_SECRET_KEY"]}, dir
}

func rgwPID(dir string) (int, error) {
	data, err := os.ReadFile(filepath.Join(dir, "run", "client.rgw.a.pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

// metric returns the value of a metric line that starts with prefix
// (name and labels) from the daemon's /metrics.
func metric(t *testing.T, addr, prefix string) (float64, bool) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// TestS3Outage stops radosgw (SIGSTOP: requests hang, as with a dead
// server that keeps its sockets) for 60 seconds while qemu-io keeps
// writing with flushes and reading back over iSCSI. The session must stay
// up, no command may fail (writes go to the local log; reads come from it
// and the read cache), the LUN reports degraded, and when radosgw runs
// again the backlog drains by itself; afterwards every flushed write is
// in the bucket alone, which passes Check.
func TestS3Outage(t *testing.T) {
	testenv.NeedQEMU(t, "qemu-io")
	r, dir := privateRGW(t)
	bucket := bucketName()
	st := r.store(t, bucket)
	d := newDaemon(t, `
data_dir: {{DATA}}
log: {level: info}
metrics: {listen: "127.0.0.1:{{PORT1}}"}
portal_groups: [{tag: 1, listen: ["127.0.0.1:{{PORT0}}"]}]
targets:
  - name: `+e2eIQN+`
    luns:
      - {lun: 0, size: 256MiB, backend: `+r.s3Backend(bucket, "outage", "cache0", "read_timeout: 5s, upload_hold: 1s")+`}
`, 2)
	d.start()
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", d.ports[1])
	pending := `lunway_cache_pending_uploads{lun="0",target="` + e2eIQN + `"}`
	failing := `lunway_cache_store_failing{lun="0",target="` + e2eIQN + `"}`
	pid, err := rgwPID(dir)
	if err != nil {
		t.Fatal(err)
	}

	// The workload: 16 KiB writes with a flush every 16, paced so that it
	// runs through the whole outage, and a verified read of an earlier
	// block after every write.
	const bs, n, every = 16 << 10, 6000, 16
	url := d.url(d.ports[0], e2eIQN, 0)
	cmd := exec.Command("stdbuf", "-oL", "qemu-io", "-f", "raw", url)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	go func() {
		w := bufio.NewWriter(stdin)
		for i := 0; i < n; i++ {
			fmt.Fprintf(w, "write -P 0x%02x %d %d\n", i%250+1, int64(i)*bs, bs)
			if i > 0 {
				j := rand.IntN(i)
				fmt.Fprintf(w, "read -P 0x%02x %d %d\n", j%250+1, int64(j)*bs, bs)
			}
			if (i+1)%every == 0 {
				fmt.Fprintf(w, "flush\nsleep 250\n")
				w.Flush()
			}
		}
		w.Flush()
		stdin.Close()
	}()

	mark, markEnd := 0, 0
	var outageStart time.Time
	type resumption struct {
		at               time.Time
		failing, pending float64
	}
	resumedc := make(chan resumption, 1)
	stopped := false
	wrote, read := 0, 0
	var bad []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		for strings.HasPrefix(line, "qemu-io> ") {
			line = line[len("qemu-io> "):]
		}
		switch {
		case strings.HasPrefix(line, "wrote "):
			wrote++
			if wrote == n {
				// The session is still up (a read and a flush follow);
				// once qemu-io exits, it ends as it should.
				markEnd = len(d.logs())
			}
		case strings.HasPrefix(line, "read "):
			read++
		case strings.Contains(line, "ops/sec") || strings.TrimSpace(line) == "" || line == "qemu-io>":
		default:
			bad = append(bad, line)
		}
		if !stopped && wrote == 400 {
			mark = len(d.logs())
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			stopped, outageStart = true, time.Now()
			t.Logf("radosgw stopped after %d writes", wrote)
			// Resume on a timer: qemu-io may say nothing for a while.
			time.AfterFunc(60*time.Second, func() {
				f, _ := metric(t, metricsAddr, failing)
				p, _ := metric(t, metricsAddr, pending)
				syscall.Kill(pid, syscall.SIGCONT)
				resumedc <- resumption{time.Now(), f, p}
			})
		}
	}
	cmd.Wait()
	var res resumption
	select {
	case res = <-resumedc:
	default:
		syscall.Kill(pid, syscall.SIGCONT)
		t.Fatalf("the workload ended after %d writes, before the outage ended; other output:\n%s\ndaemon:\n%s",
			wrote, strings.Join(bad[:min(len(bad), 20)], "\n"), tail(d.logs(), 3000))
	}
	t.Logf("radosgw resumed after %v with %v uploads pending; the workload ended %v later after %d writes",
		res.at.Sub(outageStart).Round(time.Second), res.pending, time.Since(res.at).Round(time.Second), wrote)
	if res.failing != 1 || res.pending == 0 {
		t.Errorf("at the end of the outage: %s = %v, %s = %v; want 1 and a backlog", failing, res.failing, pending, res.pending)
	}
	if len(bad) > 0 {
		t.Fatalf("qemu-io reported %d problems, first:\n%s", len(bad), strings.Join(bad[:min(len(bad), 20)], "\n"))
	}
	if wrote != n || read != n-1 {
		t.Fatalf("qemu-io completed %d writes and %d reads of %d", wrote, read, n)
	}
	logs := d.logs()[mark:markEnd]
	for _, bad := range []string{"session ended", "LOGICAL UNIT NOT SUPPORTED", "panic", "DATA RACE"} {
		if strings.Contains(logs, bad) {
			t.Errorf("daemon log after the outage began mentions %q:\n%s", bad, tail(logs, 4000))
		}
	}
	// A hung store fails nothing: the cache notices the stalled upload.
	degraded := strings.Index(logs, `"to": "degraded"`)
	if degraded < 0 || !strings.Contains(logs[degraded:], `"to": "ok"`) {
		t.Errorf("the outage and the recovery are not in the daemon log:\n%s", tail(logs, 4000))
	}
	// The backlog drains by itself.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		p, ok := metric(t, metricsAddr, pending)
		if ok && p == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still %v three minutes after the outage", pending, p)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("backlog drained %v after the outage", time.Since(res.at).Round(time.Second))
	if v, _ := metric(t, metricsAddr, failing); v != 0 {
		t.Errorf("%s = %v after the drain", failing, v)
	}
	verifyStream(t, d, 0, n)
	d.stop()
	checkS3Volume(t, st, "outage", n)
}
