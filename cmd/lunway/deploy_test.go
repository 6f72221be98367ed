package main

// Tests of deploy/: the example configurations validate as `lunway serve
// --config` validates them, the systemd unit is hardened as documented and
// passes systemd-analyze, and install.sh lays out the files.

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"github.com/lunway/lunway/internal/testenv"
)

var deployDir = filepath.Join("..", "..", "deploy")

func TestExampleConfigs(t *testing.T) {
	want := []string{"blockmap-dir.yaml", "file.yaml", "rados.yaml", "rbd.yaml", "s3.yaml"}
	got, err := filepath.Glob(filepath.Join(deployDir, "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range got {
		names = append(names, filepath.Base(p))
	}
	if !slices.Equal(names, want) {
		t.Errorf("examples %v, want %v", names, want)
	}
	backends := map[string]string{"file.yaml": "file", "blockmap-dir.yaml": "dir", "rbd.yaml": "rbd", "rados.yaml": "rados", "s3.yaml": "s3"}
	for _, p := range got {
		t.Run(filepath.Base(p), func(t *testing.T) {
			// Exactly what `lunway serve --config` does before it starts.
			cfg, _, err := loadServeConfig(&serveFlags{config: p})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.DataDir != "/var/lib/lunway" || cfg.Log.Format != "json" || cfg.Metrics.Listen == "" || len(cfg.Targets) == 0 {
				t.Errorf("example does not follow the service layout: %+v", cfg)
			}
			kind := ""
			for _, tc := range cfg.Targets {
				for _, l := range tc.LUNs {
					switch {
					case l.Backend.Type == "blockmap":
						kind = l.Backend.Store.Type
					case kind == "":
						kind = l.Backend.Type
					}
				}
			}
			if kind != backends[filepath.Base(p)] {
				t.Errorf("example's backend %q, want %q", kind, backends[filepath.Base(p)])
			}
			if d := cfg.ISCSI.ShutdownTimeout.D(30 * time.Second); d >= unitTimeoutStop(t) {
				t.Errorf("shutdown_timeout %v is not below the unit's TimeoutStopSec", d)
			}
		})
	}
}

// unitDirectives parses deploy/systemd/lunway.service: key -> values.
func unitDirectives(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join(deployDir, "systemd", "lunway.service"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("unit line %q", line)
		}
		out[k] = append(out[k], v)
	}
	return out
}

func unitTimeoutStop(t *testing.T) time.Duration {
	d, err := time.ParseDuration(unitDirectives(t)["TimeoutStopSec"][0])
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestSystemdUnit(t *testing.T) {
	u := unitDirectives(t)
	for k, want := range map[string]string{
		"User": "lunway", "Group": "lunway", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"NoNewPrivileges": "yes", "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE", "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "SystemCallFilter": "@system-service",
		"Restart": "on-failure", "StateDirectory": "lunway", "ReadWritePaths": "/etc/lunway", "PrivateDevices": "yes",
		"ExecStart": "/usr/local/bin/lunway serve --config /etc/lunway/lunway.yaml", "UMask": "0077",
	} {
		if got := u[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%v, want %s", k, got, want)
		}
	}
	if n := u["LimitNOFILE"]; len(n) != 1 || atoiOr0(n[0]) < 4096 {
		t.Errorf("LimitNOFILE=%v, want at least 4096 (a descriptor per session and per file LUN)", n)
	}
	// systemd's SIGKILL must not cut the drain short.
	if d := unitTimeoutStop(t); d <= 30*time.Second {
		t.Errorf("TimeoutStopSec %v is not above the default shutdown_timeout of 30s", d)
	}

	sa := testenv.NeedCommand(t, "systemd-analyze", "systemd")
	unit, err := os.ReadFile(filepath.Join(deployDir, "systemd", "lunway.service"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "lunway.service")
	os.WriteFile(p, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/lunway", lunwayBin)), 0o644)
	if out, err := exec.Command(sa, "verify", p).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := exec.Command(sa, "security", "--offline=yes", "--threshold=25", p).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: %v\n%s", err, out)
	}
}

func TestInstallScript(t *testing.T) {
	bash := testenv.NeedCommand(t, "bash", "bash")
	root := t.TempDir()
	run := func(args ...string) (string, error) {
		cmd := exec.Command(bash, append([]string{filepath.Join(deployDir, "install.sh")}, args...)...)
		cmd.Env = append(os.Environ(), "DESTDIR="+root)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("--binary", lunwayBin, "--example", "s3"); err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	for path, mode := range map[string]os.FileMode{
		"usr/local/bin/lunway":                      0o755,
		"etc/lunway":                                0o750 | os.ModeDir,
		"var/lib/lunway":                            0o750 | os.ModeDir,
		"etc/lunway/lunway.yaml":                    0o600,
		"etc/systemd/system/lunway.service":         0o644,
		"usr/local/share/lunway/lunway-rawdev.conf": 0o644,
	} {
		st, err := os.Stat(filepath.Join(root, path))
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if st.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", path, st.Mode(), mode)
		}
	}
	cfgPath := filepath.Join(root, "etc/lunway/lunway.yaml")
	if _, err := config.Load(cfgPath); err != nil {
		t.Errorf("installed configuration: %v", err)
	}
	// Again: an upgrade keeps the configuration.
	os.WriteFile(cfgPath, []byte("# mine\n"), 0o600)
	if out, err := run("--binary", lunwayBin); err != nil || !strings.Contains(out, "keeping the existing") {
		t.Fatalf("second install.sh: %v\n%s", err, out)
	}
	if data, _ := os.ReadFile(cfgPath); string(data) != "# mine\n" {
		t.Errorf("the configuration was overwritten")
	}
	if out, err := run("--binary", lunwayBin, "--example", "nfs"); err == nil {
		t.Errorf("unknown example accepted:\n%s", out)
	}
}

func atoiOr0(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
