package testenv

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// CephUpEnv is the environment for a private cluster's ceph-up.sh (or one
// of its daemons): this process's without the shared cluster's settings
// (test.sh exports its env file: CEPH_CONF, CEPH_KEYRING, ...), plus
// settings.
func CephUpEnv(settings ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CEPH_") {
			env = append(env, kv)
		}
	}
	return append(env, settings...)
}

// PrivateCeph starts a throwaway single-node cluster (deploy/dev/ceph-up.sh:
// one monitor, one memstore OSD, pool rbd, no manager) in a directory of
// the test's own, on ports of its own, with extra ceph-up.sh settings, for
// a test that stops or pauses it without disturbing the tests that share
// the suite's cluster. It returns the cluster's directory (ceph.conf,
// keyring, run/osd.0.pid) and purges the cluster when the test ends.
func PrivateCeph(t testing.TB, settings ...string) string {
	t.Helper()
	NeedCommand(t, "ceph-osd", "ceph-osd")
	script, err := repoFile("deploy/dev/ceph-up.sh")
	if err != nil {
		t.Fatal(err)
	}
	down := filepath.Join(filepath.Dir(script), "ceph-down.sh")
	dir := filepath.Join(t.TempDir(), "ceph")
	base := 20000 + int(time.Now().UnixNano()%400)*100
	cmd := exec.Command("bash", script, dir)
	cmd.Env = CephUpEnv(append([]string{
		"CEPH_MON_V2_PORT=" + strconv.Itoa(FreePort(t)), "CEPH_MON_V1_PORT=" + strconv.Itoa(FreePort(t)),
		"CEPH_PORT_MIN=" + strconv.Itoa(base), "CEPH_PORT_MAX=" + strconv.Itoa(base+60),
		"CEPH_MEMSTORE_BYTES=" + strconv.Itoa(1<<30), "CEPH_WITH_MGR=0", "CEPH_NO_INSTALL=1",
	}, settings...)...)
	out, err := cmd.CombinedOutput()
	t.Cleanup(func() { exec.Command("bash", down, dir, "--purge", "--fast").Run() })
	if err != nil {
		if len(out) > 4000 {
			out = out[len(out)-4000:]
		}
		t.Fatalf("ceph-up.sh: %v\n%s", err, out)
	}
	return dir
}

// repoFile finds path relative to the module root, which it looks for
// upward from the working directory (a package's directory under go test).
func repoFile(path string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, path), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}

// CephOSDPID returns the pid of the OSD of the cluster PrivateCeph
// started in dir.
func CephOSDPID(t testing.TB, dir string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "run", "osd.0.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
