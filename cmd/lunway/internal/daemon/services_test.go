package daemon

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lunway/lunway/cmd/lunway/internal/api"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lunway test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

// TestAPITCPToken: the TCP listener speaks TLS and wants the bearer
// token; a token file others can read is refused at start.
func TestAPITCPToken(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir)
	const token = "0123456789abcdef-token"
	tokFile := filepath.Join(dir, "api.token")
	if err := os.WriteFile(tokFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`
data_dir: %s
api: {listen: "127.0.0.1:0", tls_cert: %s, tls_key: %s, token_file: %s}
portal_groups: [{tag: 1, listen: ["127.0.0.1:0"]}]
targets:
  - name: %s
    luns: [{lun: 0, size: 1MiB, backend: {type: file, path: a0.img}}]
`, dir, cert, key, tokFile, iqnA)
	p := filepath.Join(dir, "lunway.yaml")
	os.WriteFile(p, []byte(yaml), 0o600)
	a := startAPIDaemonAt(t, dir, p)
	var url string
	for _, e := range a.d.Status().API {
		if strings.HasPrefix(e, "https://") {
			url = e
		}
	}
	if url == "" {
		t.Fatalf("no TCP API in %v", a.d.Status().API)
	}
	client := func(tok string) *api.Client {
		c, err := api.NewClient(api.ClientOptions{URL: url, Token: tok, CAFile: cert})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	ctx := context.Background()
	var st api.Status
	if err := client(token).Do(ctx, "GET", "/status", nil, &st); err != nil || st.Targets != 1 {
		t.Fatalf("with the token: %v %+v", err, st)
	}
	if err := client(token).Do(ctx, "POST", "/targets/"+iqnA+"/acl/initiators", api.InitiatorRequest{Initiator: ini1}, nil); err != nil {
		t.Fatalf("change with the token: %v", err)
	}
	for _, tok := range []string{"", "wrong-token-wrong-token", token + "x"} {
		err := client(tok).Do(ctx, "GET", "/status", nil, nil)
		var re *api.ResponseError
		if !errors.As(err, &re) || re.Status != http.StatusUnauthorized || !errors.Is(err, api.ErrUnauthorized) {
			t.Errorf("token %q: %v", tok, err)
		}
	}
	// Plain HTTP to the TLS port gets nowhere.
	plain := strings.Replace(url, "https://", "http://", 1)
	if resp, err := http.Get(plain + api.Prefix + "/status"); err == nil {
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP answered 200")
		}
		resp.Body.Close()
	}
	// Without the CA the certificate is not trusted.
	noCA, _ := api.NewClient(api.ClientOptions{URL: url, Token: token})
	if err := noCA.Do(ctx, "GET", "/status", nil, nil); err == nil {
		t.Errorf("an untrusted certificate was accepted")
	}
	a.stop()

	// A token file readable by others is refused at start.
	os.Chmod(tokFile, 0o644)
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Options{Config: cfg, ConfigPath: p, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Start()
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Field != "api.token_file" {
		t.Fatalf("start with a world-readable token file: %v", err)
	}
	// Nothing keeps listening after a failed start.
	if _, err := os.Stat(filepath.Join(dir, "lunway.sock")); err == nil {
		t.Errorf("the API socket remains after a failed start")
	}
}

// TestUnixSocket: mode 0600, a stale socket is replaced, a live one is
// not, a regular file is never removed, and the socket goes at shutdown.
func TestUnixSocket(t *testing.T) {
	a := startAPIDaemon(t, baseYAML)
	st, err := os.Lstat(a.socket)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v", st.Mode())
	}
	// A second daemon on the same data directory refuses to start.
	cfg, _ := config.Load(a.cfgPath)
	cfg.Portals[0].Listen = []string{"127.0.0.2:0"}
	d2, err := New(Options{Config: cfg, ConfigPath: a.cfgPath, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := d2.Start(); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second daemon on a live socket: %v", err)
	}
	a.stop()
	if _, err := os.Lstat(a.socket); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left after shutdown: %v", err)
	}
	// A stale socket (its daemon was killed) is replaced.
	ln, err := net.Listen("unix", a.socket)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	b := startAPIDaemonAt(t, a.dir, a.cfgPath)
	b.do("GET", "/status", nil, nil)
	b.stop()
	// A regular file in the way is an error and stays.
	os.WriteFile(a.socket, []byte("precious"), 0o600)
	cfg, _ = config.Load(a.cfgPath)
	d3, err := New(Options{Config: cfg, ConfigPath: a.cfgPath, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	err = d3.Start()
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Field != "api.socket" {
		t.Fatalf("start with a file at the socket path: %v", err)
	}
	if data, _ := os.ReadFile(a.socket); string(data) != "precious" {
		t.Fatal("the file at the socket path was replaced")
	}
	// The client says plainly that the daemon is not running.
	os.Remove(a.socket)
	c, _ := api.NewClient(api.ClientOptions{Socket: a.socket})
	if err := c.Do(context.Background(), "GET", "/status", nil, nil); !errors.Is(err, api.ErrDaemonNotRunning) {
		t.Fatalf("client with no daemon: %v", err)
	}
}

// scrape fetches and parses /metrics.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %s", resp.StatusCode, data)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("parsing the scrape: %v\n%s", err, data)
	}
	return mfs
}

// metric returns the metric of family name whose labels include want.
func metric(t *testing.T, mfs map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	t.Helper()
	mf := mfs[name]
	if mf == nil {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range mf.Metric {
		for k, v := range want {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		return m
	}
	t.Fatalf("no %s with labels %v", name, want)
	return nil
}

// TestMetricsAfterWorkload: after a known workload through an initiator,
// the scrape shows the expected counts.
func TestMetricsAfterWorkload(t *testing.T) {
	a := startAPIDaemon(t, `
data_dir: {{DATA}}
metrics: {listen: "127.0.0.1:0"}
portal_groups: [{tag: 1, listen: ["127.0.0.1:0"]}]
targets:
  - name: iqn.2026-11.dev.lunway:a
    luns:
      - {lun: 0, size: 4MiB, backend: {type: file, path: a0.img}}
      - {lun: 1, size: 4MiB, backend: {type: blockmap, volume: v1, store: {type: dir, path: store}}}
`)
	url := a.d.Status().Metrics
	if url == "" {
		t.Fatal("no metrics address in the status")
	}
	s := login(t, a.portal(), iqnA, ini1)
	ctx := context.Background()
	s.ClearUnitAttentions(ctx, 1)
	const writes, size = 10, 4096
	for i := 0; i < writes; i++ {
		for lun := uint64(0); lun < 2; lun++ {
			if res, err := s.Write16(ctx, lun, uint64(i*8), 512, bytes.Repeat([]byte{byte(i)}, size), false); err != nil || res.Err() != nil {
				t.Fatalf("write: %v %v", err, res.Err())
			}
		}
	}
	if res, err := s.Read16(ctx, 0, 0, 512, make([]byte, 3*size)); err != nil || res.Err() != nil {
		t.Fatalf("read: %v %v", err, res.Err())
	}
	// A read beyond the end: one ILLEGAL REQUEST.
	if res, err := s.Read16(ctx, 0, 1<<20, 512, make([]byte, 512)); err != nil || res.Err() == nil {
		t.Fatalf("read beyond the end: %v", err)
	}
	if _, err := s.SynchronizeCache(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// A failed login (ACL) for the target.
	a.do("PUT", "/targets/"+iqnA+"/acl", wire(t, config.ACL{Initiators: []string{ini1}}), nil)
	if _, err := loginErr(a.portal(), iqnA, "iqn.2026-01.com.example:intruder"); err == nil {
		t.Fatal("intruder logged in")
	}

	mfs := scrape(t, url)
	l0 := map[string]string{"target": iqnA, "lun": "0"}
	l1 := map[string]string{"target": iqnA, "lun": "1"}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"lunway_lun_writes_total", l0, writes},
		{"lunway_lun_write_bytes_total", l0, writes * size},
		{"lunway_lun_writes_total", l1, writes},
		{"lunway_lun_write_bytes_total", l1, writes * size},
		{"lunway_lun_reads_total", l0, 2},
		{"lunway_lun_read_bytes_total", l0, 3 * size},
		{"lunway_lun_errors_total", map[string]string{"target": iqnA, "lun": "0", "sense_key": "illegal_request"}, 1},
		{"lunway_lun_errors_total", map[string]string{"target": iqnA, "lun": "1", "sense_key": "medium_error"}, 0},
		{"lunway_lun_commands_in_flight", l0, 0},
		{"lunway_lun_health", l1, 0},
		{"lunway_lun_size_bytes", l1, 4 << 20},
		{"lunway_volume_guest_write_bytes_total", l1, writes * size},
		{"lunway_target_sessions", map[string]string{"target": iqnA}, 1},
		{"lunway_target_logins_total", map[string]string{"target": iqnA, "result": "ok"}, 1},
		{"lunway_target_logins_total", map[string]string{"target": iqnA, "result": "denied"}, 1},
		{"lunway_config_changes_total", map[string]string{"result": "ok"}, 1},
		{"lunway_build_info", map[string]string{"version": "test"}, 1},
	}
	for _, c := range checks {
		m := metric(t, mfs, c.name, c.labels)
		var got float64
		switch {
		case m.Counter != nil:
			got = m.Counter.GetValue()
		case m.Gauge != nil:
			got = m.Gauge.GetValue()
		}
		if got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	h := metric(t, mfs, "lunway_lun_write_latency_seconds", l0).Histogram
	if h.GetSampleCount() != writes || h.GetSampleSum() <= 0 || len(h.Bucket) != 17 ||
		h.Bucket[len(h.Bucket)-1].GetCumulativeCount() > writes {
		t.Errorf("write latency histogram %v", h)
	}
	if wa := metric(t, mfs, "lunway_volume_write_amplification", l1).Gauge.GetValue(); wa < 1 {
		t.Errorf("write amplification %v after flushed writes", wa)
	}
	if mfs["go_goroutines"] == nil || mfs["process_open_fds"] == nil {
		t.Errorf("runtime metrics missing")
	}
	// pprof is off by default.
	resp, err := http.Get(strings.TrimSuffix(url, "/metrics") + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("pprof without metrics.pprof: %d", resp.StatusCode)
	}
}
