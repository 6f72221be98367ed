// Package testenv gates tests on external programs (iscsi-test-cu, qemu-img,
// tgtd, a Ceph cluster). Locally a missing program skips the test with a
// message that says how to get it; under the project's test command
// (LUNWAY_REQUIRE_TOOLS=1, set by `make test`) it fails the test instead, so
// that CI never passes a test that did not run.
package testenv

import (
	"os"
	"os/exec"
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
