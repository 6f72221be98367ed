package main

// End-to-end test of the administration path with the real binaries:
// `lunway serve` changed live by the `lunway` CLI, a known qemu-io workload
// counted in the scrape, and a restart that comes back the same.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/lunway/lunway/cmd/lunway/internal/api"
	"github.com/lunway/lunway/internal/testenv"
)

// lwAdmin runs the lunway binary with args and returns its output.
func lwAdmin(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(lunwayBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("lunway %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// adminScrape returns the value of the sample whose line starts with
// prefix (metric name and labels, as printed).
func adminScrape(t *testing.T, url, prefix string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), prefix+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no sample %s in the scrape:\n%s", prefix, tail(string(data), 3000))
	return 0
}

func TestAdminE2E(t *testing.T) {
	testenv.NeedQEMU(t, "qemu-io")
	d := newDaemon(t, `
data_dir: {{DATA}}
log: {level: info, format: json}
metrics: {listen: "127.0.0.1:{{PORT1}}"}
portal_groups: [{tag: 1, listen: ["127.0.0.1:{{PORT0}}"]}]
targets:
  - name: `+e2eIQN+`
    luns: [{lun: 0, size: 64MiB, backend: {type: file, path: lun0.img}}]
`, 2)
	d.start()
	cfg := []string{"--config", d.cfgPath}
	lwAdmin(t, append([]string{"lun", "add", e2eIQN, "1", "--size", "64MiB", "--volume", "vol1", "--store-dir", "store"}, cfg...)...)
	lwAdmin(t, append([]string{"acl", "add", e2eIQN, "127.0.0.0/8"}, cfg...)...)

	// A known workload: n writes of 4 KiB to LUN 1.
	const n = 16
	var cmds []string
	for i := 0; i < n; i++ {
		cmds = append(cmds, "-c", fmt.Sprintf("write -P %d %d 4k", i+1, i*8192))
	}
	args := append([]string{"-f", "raw"}, cmds...)
	if out, err := exec.Command("qemu-io", append(args, d.url(d.ports[0], e2eIQN, 1))...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v\n%s", err, out)
	}
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", d.ports[1])
	l1 := `{lun="1",target="` + e2eIQN + `"}`
	if got := adminScrape(t, metricsURL, "lunway_lun_writes_total"+l1); got != n {
		t.Errorf("lunway_lun_writes_total = %v, want %d", got, n)
	}
	if got := adminScrape(t, metricsURL, "lunway_lun_write_bytes_total"+l1); got != n*4096 {
		t.Errorf("lunway_lun_write_bytes_total = %v, want %d", got, n*4096)
	}
	if got := adminScrape(t, metricsURL, `lunway_target_logins_total{result="ok",target="`+e2eIQN+`"}`); got < 1 {
		t.Errorf("logins ok = %v", got)
	}

	list := func() []api.Target {
		var ts []api.Target
		if err := json.Unmarshal([]byte(lwAdmin(t, append([]string{"target", "list", "-o", "json"}, cfg...)...)), &ts); err != nil {
			t.Fatal(err)
		}
		for i := range ts {
			ts[i].Sessions = 0
			for j := range ts[i].LUNs {
				ts[i].LUNs[j].InFlight = 0
			}
		}
		return ts
	}
	before := list()
	if len(before) != 1 || len(before[0].LUNs) != 2 || len(before[0].ACL.Networks) != 1 {
		t.Fatalf("targets after the changes: %+v", before)
	}
	d.stop()
	if !strings.Contains(d.logs(), `"msg":"configuration changed"`) {
		t.Errorf("no audit line for the changes in the log")
	}
	d.start()
	after := list()
	b, _ := json.Marshal(before)
	a, _ := json.Marshal(after)
	if string(a) != string(b) {
		t.Errorf("after restart:\n%s\nbefore:\n%s", a, b)
	}
	// The data written before the restart is there.
	out, err := exec.Command("qemu-io", "-f", "raw", "-c", fmt.Sprintf("read -P %d %d 4k", n, (n-1)*8192),
		d.url(d.ports[0], e2eIQN, 1)).CombinedOutput()
	if err != nil || strings.Contains(string(out), "Pattern verification failed") {
		t.Errorf("reading back after restart: %v\n%s", err, out)
	}
}
