package main

// Tests of the administration commands against an in-process daemon,
// through its real socket.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/lunway/lunway/cmd/lunway/internal/api"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"github.com/lunway/lunway/cmd/lunway/internal/daemon"
	"github.com/lunway/lunway/target/initiator"
)

// cli runs `lunway args...` in-process with stdin and returns its output.
func cli(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		var dump bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&dump, 1)
		t.Logf("lunway %s timed out; goroutines:\n%s", strings.Join(args, " "), dump.String())
	}
	return out.String(), err
}

// mustCLI runs a command that must succeed and contain every want.
func mustCLI(t *testing.T, args []string, want ...string) string {
	t.Helper()
	out, err := cli(t, "", args...)
	if err != nil {
		t.Fatalf("lunway %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("lunway %s: output lacks %q:\n%s", strings.Join(args, " "), w, out)
		}
	}
	return out
}

func startCLIDaemon(t *testing.T) (dir, portal string) {
	t.Helper()
	dir = t.TempDir()
	cfgPath := filepath.Join(dir, "lunway.yaml")
	os.WriteFile(cfgPath, []byte(`
data_dir: `+dir+`
portal_groups: [{tag: 1, listen: ["127.0.0.1:0"]}]
targets:
  - name: iqn.2026-11.dev.lunway:cli
    luns: [{lun: 0, size: 1MiB, backend: {type: file, path: l0.img}}]
`), 0o600)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(daemon.Options{Config: cfg, ConfigPath: cfgPath, Version: "cli-test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		d.Shutdown(ctx)
	})
	return dir, d.Addrs()[0].String()
}

func TestCLI(t *testing.T) {
	dir, portal := startCLIDaemon(t)
	const tg = "iqn.2026-11.dev.lunway:cli"
	dd := []string{"--data-dir", dir}
	a := func(args ...string) []string { return append(args, dd...) }

	mustCLI(t, a("status"), "Version", "cli-test", "Health", "ok", "Targets", "1 (1 LUNs)")
	mustCLI(t, a("target", "list"), "NAME", tg, "open")
	mustCLI(t, a("target", "add", "iqn.2026-11.dev.lunway:two", "--alias", "second"), "added")
	mustCLI(t, a("target", "set", "iqn.2026-11.dev.lunway:two", "--alias", "deux"), "changed")
	mustCLI(t, a("lun", "add", tg, "1", "--size", "2MiB", "--file", "l1.img"), "LUN 1 of "+tg+" added: 2MiB file")
	mustCLI(t, a("lun", "add", tg, "2", "--size", "4MiB", "--volume", "v2", "--store-dir", "store"), "blockmap")
	mustCLI(t, a("lun", "add", tg, "3", "--size", "1MiB", "--backend", `{"type": "file", "path": "l3.img"}`), "LUN 3")
	out := mustCLI(t, a("lun", "list", tg, "-o", "json"))
	var luns []api.LUN
	if err := json.Unmarshal([]byte(out), &luns); err != nil || len(luns) != 4 || luns[2].BackendType != "blockmap" {
		t.Fatalf("lun list -o json: %v\n%s", err, out)
	}
	mustCLI(t, a("lun", "list"), "TARGET", "l1.img", "dir:v2", "2MiB")
	mustCLI(t, a("lun", "resize", tg, "1", "8MiB"), "is now 8MiB")
	mustCLI(t, a("lun", "show", tg, "1"), "8MiB", "path: l1.img")
	mustCLI(t, a("lun", "snapshot", "create", tg, "2", "s1"), "snapshot s1")
	mustCLI(t, a("lun", "snapshot", "list", tg, "2"), "NAME", "s1", "4MiB")
	mustCLI(t, a("lun", "clone", tg, "2", "s1", "v9", "--to", tg, "--to-lun", "9"), "served as LUN 9")
	mustCLI(t, a("acl", "add", tg, "iqn.2026-01.com.example:host1", "127.0.0.0/8"), "allowed")
	mustCLI(t, a("acl", "show", tg), "initiator", "iqn.2026-01.com.example:host1", "network", "127.0.0.0/8")
	if _, err := cli(t, "chap-secret-for-cli\n", a("chap", "set", tg, "--user", "cliuser", "--secret-stdin")...); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, a("chap", "show", tg), "cliuser", api.Redacted)
	// The ACL and CHAP are live.
	s, err := initiator.Dial(context.Background(), portal, &initiator.Options{TargetName: tg, InitiatorName: "iqn.2026-01.com.example:host1",
		CHAP: &initiator.CHAP{User: "cliuser", Secret: "chap-secret-for-cli"}})
	if err != nil {
		t.Fatalf("login after acl/chap through the CLI: %v", err)
	}
	defer s.Close()
	out = mustCLI(t, a("session", "list", "-o", "json"))
	var ss []api.Session
	if err := json.Unmarshal([]byte(out), &ss); err != nil || len(ss) != 1 || ss[0].Target != tg {
		t.Fatalf("session list -o json: %v\n%s", err, out)
	}
	mustCLI(t, a("session", "list"), "INITIATOR", "iqn.2026-01.com.example:host1")
	mustCLI(t, a("session", "drop", jsonNumber(ss[0].ID)), "dropped")
	mustCLI(t, a("chap", "remove", tg), "no longer")
	mustCLI(t, a("acl", "remove", tg, "127.0.0.0/8"), "removed")
	mustCLI(t, a("acl", "clear", tg), "every initiator")
	mustCLI(t, a("portal", "add", "2", "127.0.0.2:0", "--alua", "active-nonoptimized"), "portal group 2")
	mustCLI(t, a("portal", "alua", "2", "standby"), "standby")
	mustCLI(t, a("portal", "list"), "TAG", "standby")
	mustCLI(t, a("portal", "remove", "2", "--yes"), "removed")
	mustCLI(t, a("health", "--check"), "Overall: ok", "BACKEND")
	mustCLI(t, a("lun", "remove", tg, "3", "--yes"), "removed")
	mustCLI(t, a("target", "remove", "iqn.2026-11.dev.lunway:two", "--yes"), "removed")
	out = mustCLI(t, a("target", "show", tg, "-o", "json"))
	var tv api.Target
	if err := json.Unmarshal([]byte(out), &tv); err != nil || len(tv.LUNs) != 4 || tv.CHAP != nil {
		t.Fatalf("target show -o json: %v\n%s", err, out)
	}

	// Errors: the caller's (exit status 2) and the daemon's absence (1).
	for _, args := range [][]string{
		{"lun", "add", tg, "1", "--size", "1MiB", "--file", "dup.img"},                         // LUN exists: 409
		{"lun", "add", tg, "5", "--size", "-1", "--file", "x.img"},                             // bad size
		{"lun", "add", tg, "5", "--size", "1MiB", "--file", "../x.img"},                        // path escape: 400
		{"lun", "resize", tg, "1", "1MiB"},                                                     // shrink without --allow-shrink
		{"target", "remove", tg},                                                               // no --yes
		{"target", "show", "iqn.2026-11.dev.lunway:nope"},                                      // 404
		{"lun", "add", tg, "5", "--size", "1MiB", "--backend", `{"type": "file", "pth": "x"}`}, // unknown field
		{"status", "-o", "xml"},
	} {
		out, err := cli(t, "", a(args...)...)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("lunway %s: %v (want a usage error, exit status 2)\n%s", strings.Join(args, " "), err, out)
		}
	}
	_, err = cli(t, "", "status", "--data-dir", t.TempDir())
	var ue usageError
	if !errors.Is(err, api.ErrDaemonNotRunning) || errors.As(err, &ue) || strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("status without a daemon: %v", err)
	}
}

func jsonNumber(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestCLICompletion: the shell completion scripts are generated.
func TestCLICompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out, err := cli(t, "", "completion", sh)
		if err != nil || !strings.Contains(out, "lunway") || len(out) < 1000 {
			t.Errorf("completion %s: %v (%d bytes)", sh, err, len(out))
		}
	}
}
