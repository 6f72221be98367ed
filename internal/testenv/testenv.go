// Package testenv gates tests on external programs (iscsi-test-cu, qemu-img,
// tgtd, a Ceph cluster). Locally a missing program skips the test with a
// message that says how to get it; under the project's test command
// (LUNWAY_REQUIRE_TOOLS=1, set by `make test`) it fails the test instead, so
// that CI never passes a test that did not run.
package testenv

import (
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// Required reports whether missing external programs fail tests.
func Required() bool { return os.Getenv("LUNWAY_REQUIRE_TOOLS") == "1" }

// NeedCommand returns the path of the named program, or stops the test:
// skipped locally, failed under LUNWAY_REQUIRE_TOOLS=1. pkg names the
// Debian package that provides it.
func NeedCommand(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	Unavailable(t, name+" not found (apt-get install "+pkg+")")
	return ""
}

// NeedQEMU returns the path of a QEMU tool (qemu-img, qemu-io, qemu-nbd)
// whose iscsi:// driver loads, or stops the test like NeedCommand. Debian
// ships the driver apart from qemu-utils, in qemu-block-extra (a
// Recommends that --no-install-recommends leaves out), and a missing
// module surfaces only when a URL is opened, as "Unknown protocol".
func NeedQEMU(t testing.TB, name string) string {
	t.Helper()
	p := NeedCommand(t, name, "qemu-utils")
	if p == "" {
		return ""
	}
	if why := qemuISCSI(); why != "" {
		Unavailable(t, why)
		return ""
	}
	return p
}

// qemuISCSI reports why QEMU cannot open iscsi:// URLs, or "". It opens a
// URL on a closed port: the driver, when present, fails to connect.
var qemuISCSI = sync.OnceValue(func() string {
	img, err := exec.LookPath("qemu-img")
	if err != nil {
		return "qemu-img not found (apt-get install qemu-utils)"
	}
	out, _ := exec.Command(img, "info", "iscsi://127.0.0.1:1/iqn.2026-11.dev.lunway:probe/0").CombinedOutput()
	if strings.Contains(string(out), "Unknown protocol") || strings.Contains(string(out), "module block-block-iscsi not found") {
		return "QEMU has no iscsi driver (apt-get install qemu-block-extra)"
	}
	return ""
})

// Unavailable stops a test whose external dependency is missing, with why.
func Unavailable(t testing.TB, why string) {
	t.Helper()
	if Required() {
		t.Fatalf("required test dependency unavailable: %s", why)
	}
	t.Skipf("skipped: %s (set LUNWAY_REQUIRE_TOOLS=1 to make this an error)", why)
}

// Long skips a test in -short mode.
func Long(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped in -short mode")
	}
}

// Ceph returns the environment of the throwaway Ceph cluster that
// deploy/dev/ceph-up.sh started (CEPH_CONF, CEPH_KEYRING, CEPH_POOL,
// CEPH_MON_HOST, and with radosgw CEPH_RGW_ENDPOINT, CEPH_S3_ACCESS_KEY,
// CEPH_S3_SECRET_KEY), read from the file named by LUNWAY_CEPH_ENV or
// from the process environment. Without a cluster the test stops:
// skipped locally, failed under LUNWAY_REQUIRE_TOOLS=1.
func Ceph(t testing.TB) map[string]string {
	t.Helper()
	env := map[string]string{}
	if p := os.Getenv("LUNWAY_CEPH_ENV"); p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			Unavailable(t, "LUNWAY_CEPH_ENV: "+err.Error())
			return nil
		}
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
				env[k] = v
			}
		}
	}
	for _, k := range []string{"CEPH_DIR", "CEPH_CONF", "CEPH_KEYRING", "CEPH_POOL", "CEPH_MON_HOST",
		"CEPH_RGW_ENDPOINT", "CEPH_S3_ACCESS_KEY", "CEPH_S3_SECRET_KEY"} {
		if v := os.Getenv(k); v != "" && env[k] == "" {
			env[k] = v
		}
	}
	if env["CEPH_CONF"] == "" {
		Unavailable(t, "no Ceph cluster: start one with `bash deploy/dev/ceph-up.sh DIR` and set LUNWAY_CEPH_ENV=DIR/env")
		return nil
	}
	return env
}
