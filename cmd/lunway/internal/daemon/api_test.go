package daemon

// Tests of the management API through the real Unix socket of an
// in-process daemon.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lunway/lunway/cmd/lunway/internal/api"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"github.com/lunway/lunway/target/initiator"
	"github.com/lunway/lunway/target/iscsitest"
)

const (
	iqnA = "iqn.2026-11.dev.lunway:a"
	iqnB = "iqn.2026-11.dev.lunway:b"
	ini1 = "iqn.2026-01.com.example:host1"
)

// apiDaemon is a running daemon with its API client.
type apiDaemon struct {
	t       *testing.T
	d       *Daemon
	c       *api.Client
	dir     string
	cfgPath string
	socket  string
}

// startAPIDaemon writes yaml (with {{DATA}} for the data directory) to
// DATA/lunway.yaml, starts a daemon on it and connects a client to its
// socket. The portal listens on 127.0.0.1:0 unless yaml has portals.
func startAPIDaemon(t *testing.T, yaml string) *apiDaemon {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "lunway.yaml")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(yaml, "{{DATA}}", dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	return startAPIDaemonAt(t, dir, p)
}

func startAPIDaemonAt(t *testing.T, dir, cfgPath string) *apiDaemon {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Options{Config: cfg, ConfigPath: cfgPath, Logger: testLogger(t), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	a := &apiDaemon{t: t, d: d, dir: dir, cfgPath: cfgPath, socket: cfg.ResolvePath(cfg.API.Socket)}
	a.c, err = api.NewClient(api.ClientOptions{Socket: a.socket})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.stop)
	return a
}

func (a *apiDaemon) stop() {
	if a.d == nil {
		return
	}
	a.c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.d.Shutdown(ctx); err != nil {
		a.t.Errorf("shutdown: %v", err)
	}
	a.d = nil
}

// portal returns the bound address of the first portal.
func (a *apiDaemon) portal() string {
	return a.d.Addrs()[0].String()
}

// raw sends a request with a raw body and returns the status and the
// decoded error body.
func (a *apiDaemon) raw(method, path, contentType string, body []byte) (int, api.ErrorBody, []byte) {
	a.t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", a.socket)
	}}}
	defer hc.CloseIdleConnections()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://lunway"+api.Prefix+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := hc.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var eb api.ErrorBody
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(data, &eb); err != nil {
			a.t.Errorf("%s %s: %d answer is not JSON: %q", method, path, resp.StatusCode, data)
		}
	}
	return resp.StatusCode, eb, data
}

// do calls the API and fails the test on error.
func (a *apiDaemon) do(method, path string, body, out any) {
	a.t.Helper()
	if err := a.c.Do(context.Background(), method, path, body, out); err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
}

// status calls the API and returns the HTTP status (200 on success).
func (a *apiDaemon) status(method, path string, body any) (int, *api.ResponseError) {
	a.t.Helper()
	err := a.c.Do(context.Background(), method, path, body, nil)
	if err == nil {
		return http.StatusOK, nil
	}
	var re *api.ResponseError
	if !errors.As(err, &re) {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	return re.Status, re
}

func (a *apiDaemon) target(name string) (api.Target, bool) {
	for _, t := range a.d.Targets() {
		if t.Name == name {
			return t, true
		}
	}
	return api.Target{}, false
}

// savedConfig loads the configuration file as the daemon saved it.
func (a *apiDaemon) savedConfig() *config.Config {
	a.t.Helper()
	c, err := config.Load(a.cfgPath)
	if err != nil {
		a.t.Fatalf("saved configuration: %v", err)
	}
	return c
}

func wire(t *testing.T, v any) any {
	t.Helper()
	w, err := api.WireValue(v)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func login(t *testing.T, addr, target, initiatorName string) *initiator.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := initiator.Dial(ctx, addr, &initiator.Options{TargetName: target, InitiatorName: initiatorName})
	if err != nil {
		t.Fatalf("login to %s as %s: %v", target, initiatorName, err)
	}
	t.Cleanup(func() { s.Close() })
	s.ClearUnitAttentions(ctx, 0)
	return s
}

const baseYAML = `
data_dir: {{DATA}}
portal_groups:
  - {tag: 1, listen: ["127.0.0.1:0"]}
targets:
  - name: iqn.2026-11.dev.lunway:a
    luns:
      - {lun: 0, size: 1MiB, backend: {type: file, path: a0.img}}
`

// TestAPIEndpoints walks every route of the API once, checking the live
// state after each change and, at the end, that a restart from the saved
// file comes back the same.
func TestAPIEndpoints(t *testing.T) {
	a := startAPIDaemon(t, baseYAML)
	ctx := context.Background()

	var st api.Status
	a.do("GET", "/status", nil, &st)
	if st.Targets != 1 || st.LUNs != 1 || st.Health != "ok" || st.Version != "test" || len(st.Portals) != 1 ||
		st.ConfigPath != a.cfgPath || len(st.API) != 1 {
		t.Errorf("status %+v", st)
	}
	var h api.Health
	a.do("GET", "/health", nil, &h)
	if h.Status != "ok" || len(h.LUNs) != 1 || h.LUNs[0].Health != "ok" || len(h.Backends) != 1 || h.Backends[0].Type != "file" {
		t.Errorf("health %+v", h)
	}
	var cfgView map[string]any
	a.do("GET", "/config", nil, &cfgView)
	if _, ok := cfgView["targets"]; !ok {
		t.Errorf("config view %v", cfgView)
	}

	// Targets.
	var tv api.Target
	a.do("POST", "/targets", wire(t, config.Target{Name: iqnB, Alias: "bee",
		LUNs: []config.LUN{{LUN: 3, Size: 2 << 20, Backend: config.Backend{Type: "file", Path: "b3.img"}}}}), &tv)
	if tv.Name != iqnB || tv.Alias != "bee" || len(tv.LUNs) != 1 || tv.LUNs[0].SizeBytes != 2<<20 || tv.LUNs[0].NAA == "" {
		t.Fatalf("added target %+v", tv)
	}
	var list []api.Target
	a.do("GET", "/targets", nil, &list)
	if len(list) != 2 || list[0].Name != iqnA || list[1].Name != iqnB {
		t.Fatalf("targets %+v", list)
	}
	a.do("GET", "/targets/"+iqnB, nil, &tv)
	alias := "renamed"
	a.do("PATCH", "/targets/"+iqnB, api.TargetPatch{Alias: &alias}, &tv)
	if tv.Alias != "renamed" {
		t.Errorf("alias after PATCH: %q", tv.Alias)
	}
	s := login(t, a.portal(), iqnB, ini1)
	if s.TargetAlias() != "renamed" {
		t.Errorf("TargetAlias at login %q", s.TargetAlias())
	}

	// LUNs: add, read, resize, remove.
	var lv api.LUN
	a.do("POST", "/targets/"+iqnB+"/luns", wire(t, config.LUN{LUN: 4, Size: 1 << 20,
		Backend: config.Backend{Type: "file", Path: "b4.img"}}), &lv)
	if lv.LUN != 4 || lv.SizeBytes != 1<<20 || lv.Health != "ok" || lv.BackendType != "file" {
		t.Errorf("added LUN %+v", lv)
	}
	if luns, err := s.ReportLUNs(ctx); err != nil || len(luns) != 2 {
		t.Errorf("REPORT LUNS after add: %v %v", luns, err)
	}
	var luns []api.LUN
	a.do("GET", "/targets/"+iqnB+"/luns", nil, &luns)
	if len(luns) != 2 || luns[0].LUN != 3 || luns[1].LUN != 4 {
		t.Errorf("LUNs %+v", luns)
	}
	a.do("POST", "/targets/"+iqnB+"/luns/4/resize", api.ResizeRequest{Size: 4 << 20}, &lv)
	if lv.SizeBytes != 4<<20 {
		t.Errorf("after resize %+v", lv)
	}
	s.ClearUnitAttentions(ctx, 4)
	if c, err := s.ReadCapacity16(ctx, 4); err != nil || c.Blocks*uint64(c.BlockSize) != 4<<20 {
		t.Errorf("capacity seen by the initiator after resize: %+v %v", c, err)
	}
	if code, re := a.status("POST", "/targets/"+iqnB+"/luns/4/resize", api.ResizeRequest{Size: 1 << 20}); code != http.StatusConflict || re.Body.Field != "size" {
		t.Errorf("shrink without allow_shrink: %d %v", code, re)
	}
	a.do("POST", "/targets/"+iqnB+"/luns/4/resize", api.ResizeRequest{Size: 1 << 20, AllowShrink: true}, &lv)
	if lv.SizeBytes != 1<<20 {
		t.Errorf("after shrink %+v", lv)
	}
	a.do("GET", "/targets/"+iqnB+"/luns/4", nil, &lv)
	a.do("DELETE", "/targets/"+iqnB+"/luns/4", nil, nil)
	if code, _ := a.status("GET", "/targets/"+iqnB+"/luns/4", nil); code != http.StatusNotFound {
		t.Errorf("removed LUN: %d", code)
	}
	if _, err := os.Stat(filepath.Join(a.dir, "b4.img")); err != nil {
		t.Errorf("removing a LUN removed its data: %v", err)
	}

	// Blockmap LUN: snapshots and clones.
	a.do("POST", "/targets/"+iqnB+"/luns", wire(t, config.LUN{LUN: 5, Size: 8 << 20, Backend: config.Backend{
		Type: "blockmap", Volume: "vol5", Store: &config.Store{Type: "dir", Path: "store"}}}), &lv)
	s.ClearUnitAttentions(ctx, 5)
	pattern := bytes.Repeat([]byte("snapshot"), 512)
	if res, err := s.Write16(ctx, 5, 0, 512, pattern, true); err != nil || res.Err() != nil {
		t.Fatalf("write: %v %v", err, res.Err())
	}
	var snap api.Snapshot
	a.do("POST", "/targets/"+iqnB+"/luns/5/snapshots", api.SnapshotRequest{Name: "s1"}, &snap)
	if snap.Name != "s1" || snap.SizeBytes != 8<<20 {
		t.Errorf("snapshot %+v", snap)
	}
	var snaps []api.Snapshot
	a.do("GET", "/targets/"+iqnB+"/luns/5/snapshots", nil, &snaps)
	if len(snaps) != 1 || snaps[0].Name != "s1" {
		t.Errorf("snapshots %+v", snaps)
	}
	lun6 := uint64(6)
	a.do("POST", "/targets/"+iqnB+"/luns/5/clone", api.CloneRequest{Snapshot: "s1", Volume: "vol6", Target: iqnB, LUN: &lun6}, &lv)
	if lv.LUN != 6 || lv.Backend["volume"] != "vol6" {
		t.Errorf("clone LUN %+v", lv)
	}
	s.ClearUnitAttentions(ctx, 6)
	buf := make([]byte, len(pattern))
	if res, err := s.Read16(ctx, 6, 0, 512, buf); err != nil || res.Err() != nil || !bytes.Equal(buf, pattern) {
		t.Errorf("reading the clone: %v %v equal=%v", err, res, bytes.Equal(buf, pattern))
	}
	a.do("POST", "/targets/"+iqnB+"/luns/5/clone", api.CloneRequest{Snapshot: "s1", Volume: "vol7"}, nil)
	if code, re := a.status("DELETE", "/targets/"+iqnB+"/luns/5/snapshots/s1", nil); code != http.StatusConflict {
		t.Errorf("deleting a snapshot with clones: %d %v", code, re)
	}
	if code, re := a.status("POST", "/targets/"+iqnB+"/luns/3/snapshots", api.SnapshotRequest{Name: "x"}); code != http.StatusBadRequest || re.Body.Field != "lun" {
		t.Errorf("snapshot of a file LUN: %d %v", code, re)
	}
	a.do("POST", "/targets/"+iqnB+"/luns/5/snapshots", api.SnapshotRequest{Name: "s2"}, nil)
	a.do("DELETE", "/targets/"+iqnB+"/luns/5/snapshots/s2", nil, nil)

	// ACL.
	var acl api.ACL
	a.do("PUT", "/targets/"+iqnA+"/acl", wire(t, config.ACL{Initiators: []string{ini1}}), &acl)
	if len(acl.Initiators) != 1 || acl.Initiators[0] != ini1 {
		t.Errorf("ACL %+v", acl)
	}
	a.do("POST", "/targets/"+iqnA+"/acl/initiators", api.InitiatorRequest{Initiator: "iqn.2026-01.com.example:host2"}, &acl)
	a.do("POST", "/targets/"+iqnA+"/acl/networks", api.NetworkRequest{Network: "127.0.0.0/8"}, &acl)
	if len(acl.Initiators) != 2 || len(acl.Networks) != 1 {
		t.Errorf("ACL %+v", acl)
	}
	login(t, a.portal(), iqnA, "iqn.2026-01.com.example:host2").Close()
	if _, err := initiator.Dial(ctx, a.portal(), &initiator.Options{TargetName: iqnA, InitiatorName: "iqn.2026-01.com.example:other"}); err == nil {
		t.Errorf("an initiator outside the ACL logged in")
	}
	a.do("DELETE", "/targets/"+iqnA+"/acl/initiators/iqn.2026-01.com.example:host2", nil, &acl)
	a.do("DELETE", "/targets/"+iqnA+"/acl/networks?network=127.0.0.0/8", nil, &acl)
	a.do("GET", "/targets/"+iqnA+"/acl", nil, &acl)
	if len(acl.Initiators) != 1 || len(acl.Networks) != 0 {
		t.Errorf("ACL after removals %+v", acl)
	}

	// CHAP.
	var ch api.CHAP
	a.do("PUT", "/targets/"+iqnA+"/chap", wire(t, config.CHAP{User: "u1", Secret: "secret-of-u1-123"}), &ch)
	a.do("GET", "/targets/"+iqnA+"/chap", nil, &ch)
	if ch.User != "u1" || ch.Secret != api.Redacted {
		t.Errorf("CHAP view %+v", ch)
	}
	if _, err := initiator.Dial(ctx, a.portal(), &initiator.Options{TargetName: iqnA, InitiatorName: ini1}); err == nil {
		t.Errorf("login without CHAP succeeded after CHAP was set")
	}
	cs, err := initiator.Dial(ctx, a.portal(), &initiator.Options{TargetName: iqnA, InitiatorName: ini1,
		CHAP: &initiator.CHAP{User: "u1", Secret: "secret-of-u1-123"}})
	if err != nil {
		t.Errorf("login with CHAP: %v", err)
	} else {
		cs.Close()
	}
	a.do("DELETE", "/targets/"+iqnA+"/chap", nil, nil)
	if code, _ := a.status("GET", "/targets/"+iqnA+"/chap", nil); code != http.StatusNotFound {
		t.Errorf("CHAP after removal: %d", code)
	}

	// Portal groups.
	var pg api.PortalGroup
	a.do("POST", "/portal-groups", wire(t, config.Portal{Tag: 2, Listen: []string{"127.0.0.2:0"}}), &pg)
	if pg.Tag != 2 || len(pg.Addrs) != 1 || pg.ALUAState != "active-optimized" {
		t.Fatalf("added portal group %+v", pg)
	}
	s2 := login(t, pg.Addrs[0], iqnB, "iqn.2026-01.com.example:host3")
	a.do("PATCH", "/portal-groups/2", api.PortalGroupPatch{ALUAState: "standby"}, &pg)
	if pg.ALUAState != "standby" {
		t.Errorf("ALUA state %q", pg.ALUAState)
	}
	if res, err := s2.Read16(ctx, 3, 0, 512, make([]byte, 512)); err != nil || res.Err() == nil {
		t.Errorf("a read through a standby portal group succeeded: %v", err)
	}
	var pgs []api.PortalGroup
	a.do("GET", "/portal-groups", nil, &pgs)
	if len(pgs) != 2 {
		t.Errorf("portal groups %+v", pgs)
	}
	a.do("POST", "/portal-groups/2/listen", api.ListenRequest{Address: "127.0.0.3:0"}, &pg)
	if len(pg.Addrs) != 2 {
		t.Errorf("after adding a listener %+v", pg)
	}
	a.do("DELETE", "/portal-groups/2/listen/127.0.0.3:0", nil, &pg)
	a.do("GET", "/portal-groups/2", nil, &pg)
	if len(pg.Listen) != 1 || len(pg.Addrs) != 1 {
		t.Errorf("after removing a listener %+v", pg)
	}
	gone := pg.Addrs[0]
	a.do("DELETE", "/portal-groups/2", nil, nil)
	select {
	case <-s2.Done():
	case <-time.After(10 * time.Second):
		t.Errorf("a session of a removed portal group is still up")
	}
	if c, err := net.DialTimeout("tcp", gone, time.Second); err == nil {
		c.Close()
		t.Errorf("the removed portal group still listens on %s", gone)
	}

	// Sessions.
	var sessions []api.Session
	a.do("GET", "/sessions", nil, &sessions)
	var mine *api.Session
	for i := range sessions {
		if sessions[i].Initiator == ini1 && sessions[i].Target == iqnB {
			mine = &sessions[i]
		}
	}
	if mine == nil || mine.PortalGroup != 1 || mine.Remote == "" || mine.ISID == "" {
		t.Fatalf("sessions %+v", sessions)
	}
	a.do("DELETE", fmt.Sprintf("/sessions/%d", mine.ID), nil, nil)
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Errorf("dropped session still up")
	}
	if code, _ := a.status("DELETE", fmt.Sprintf("/sessions/%d", mine.ID), nil); code != http.StatusNotFound {
		t.Errorf("dropping a dropped session: %d", code)
	}

	// The saved file equals the live configuration, and a restart from it
	// comes back with the same targets, LUNs and identities.
	before := stripLive(a.d.Targets())
	beforePG := a.d.PortalGroups()
	saved := a.savedConfig()
	live, _ := a.d.Config().Marshal()
	file, _ := saved.Marshal()
	if !bytes.Equal(live, file) {
		t.Errorf("saved configuration differs from the live one:\n%s\n---\n%s", file, live)
	}
	a.do("DELETE", "/targets/"+iqnA, nil, nil)
	if _, ok := a.target(iqnA); ok {
		t.Errorf("removed target still listed")
	}
	if code, _ := a.status("GET", "/targets/"+iqnA, nil); code != http.StatusNotFound {
		t.Errorf("removed target: %d", code)
	}
	a.stop()
	b := startAPIDaemonAt(t, a.dir, a.cfgPath)
	after := stripLive(b.d.Targets())
	want := before[1:] // without iqnA, removed above
	if !jsonEqual(after, want) {
		t.Errorf("after restart:\n%s\nwant\n%s", js(after), js(want))
	}
	if pgs := b.d.PortalGroups(); len(pgs) != len(beforePG) || pgs[0].ALUAState != beforePG[0].ALUAState {
		t.Errorf("portal groups after restart %+v (before %+v)", pgs, beforePG)
	}
}

// stripLive drops what changes by itself (sessions, commands in flight).
func stripLive(ts []api.Target) []api.Target {
	for i := range ts {
		ts[i].Sessions = 0
		for j := range ts[i].LUNs {
			ts[i].LUNs[j].InFlight = 0
		}
	}
	return ts
}

func js(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

func jsonEqual(a, b any) bool { return js(a) == js(b) }

func testLogger(t *testing.T) *slog.Logger { return iscsitest.Logger(t) }

// TestAPIBadInput: malformed requests get a 4xx JSON error naming the
// field, and change nothing.
func TestAPIBadInput(t *testing.T) {
	a := startAPIDaemon(t, baseYAML+`
  - name: iqn.2026-11.dev.lunway:bm
    luns:
      - {lun: 0, size: 1MiB, backend: {type: blockmap, volume: v0, store: {type: dir, path: store}}}
`)
	fileBefore, err := os.ReadFile(a.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	big := `{"name": "` + strings.Repeat("x", api.MaxBodyBytes) + `"}`
	tl := "/targets/" + iqnA + "/luns"
	tests := []struct {
		name, method, path, ctype, body string
		status                          int
		field                           string
	}{
		{"unknown field", "POST", "/targets", "", `{"name": "iqn.2026-11.dev.lunway:x", "lunz": []}`, 400, "lunz"},
		{"unknown nested field", "POST", tl, "", `{"lun": 1, "size": 1048576, "backend": {"type": "file", "path": "x.img", "bogus": 1}}`, 400, "backend.bogus"},
		{"unknown field in a list", "POST", "/targets", "", `{"name": "iqn.2026-11.dev.lunway:x", "luns": [{"lun": 0, "sise": 1}]}`, 400, "luns[0].sise"},
		{"negative size", "POST", tl, "", `{"lun": 1, "size": -4096, "backend": {"type": "file", "path": "x.img"}}`, 400, "size"},
		{"negative size string", "POST", tl, "", `{"lun": 1, "size": "-1GiB", "backend": {"type": "file", "path": "x.img"}}`, 400, "size"},
		{"fractional size", "POST", tl, "", `{"lun": 1, "size": 1.5, "backend": {"type": "file", "path": "x.img"}}`, 400, "size"},
		{"size not a multiple of 512", "POST", tl, "", `{"lun": 1, "size": 1000, "backend": {"type": "file", "path": "x.img"}}`, 400, "size"},
		{"negative LUN", "POST", tl, "", `{"lun": -1, "backend": {"type": "file", "path": "x.img"}}`, 400, "lun"},
		{"LUN as a string", "POST", tl, "", `{"lun": "one", "backend": {"type": "file", "path": "x.img"}}`, 400, "lun"},
		{"LUN out of range", "POST", tl, "", `{"lun": 20000, "size": 1048576, "backend": {"type": "file", "path": "x.img"}}`, 400, "lun"},
		{"bool as a string", "POST", tl, "", `{"lun": 1, "read_only": "yes", "backend": {"type": "file", "path": "x.img"}}`, 400, "read_only"},
		{"object for a string", "POST", "/targets", "", `{"name": {"a": 1}}`, 400, "name"},
		{"duplicate LUN", "POST", tl, "", `{"lun": 0, "size": 1048576, "backend": {"type": "file", "path": "y.img"}}`, 409, "lun"},
		{"path-like target name", "POST", "/targets", "", `{"name": "../../etc/passwd"}`, 400, "name"},
		{"upper-case target name", "POST", "/targets", "", `{"name": "IQN.2026-11.dev.lunway:x"}`, 400, "name"},
		{"path-like volume name", "POST", tl, "", `{"lun": 1, "size": 1048576, "backend": {"type": "blockmap", "volume": "../v", "store": {"type": "dir", "path": "store"}}}`, 400, "backend.volume"},
		{"path escaping with ..", "POST", tl, "", `{"lun": 1, "size": 1048576, "backend": {"type": "file", "path": "../../x.img"}}`, 400, "backend.path"},
		{"unclean store path", "POST", tl, "", `{"lun": 1, "size": 1048576, "backend": {"type": "blockmap", "volume": "v", "store": {"type": "dir", "path": "a//b/"}}}`, 400, "backend.store.path"},
		{"file used twice", "POST", tl, "", `{"lun": 1, "size": 1048576, "backend": {"type": "file", "path": "a0.img"}}`, 400, "backend.path"},
		{"unknown backend", "POST", tl, "", `{"lun": 1, "size": 1048576, "backend": {"type": "nfs"}}`, 400, "backend.type"},
		{"duplicate target", "POST", "/targets", "", `{"name": "` + iqnA + `"}`, 409, "name"},
		{"missing target", "POST", "/targets/iqn.2026-11.dev.lunway:nope/luns", "", `{"lun": 1, "size": 1048576, "backend": {"type": "file", "path": "z.img"}}`, 404, "target"},
		{"slash in the target of the URL", "GET", "/targets/iqn.2026-11.dev.lunway:a%2F..%2Fb", "", "", 400, "target"},
		{"LUN in the URL not a number", "GET", "/targets/" + iqnA + "/luns/x", "", "", 400, "lun"},
		{"LUN in the URL out of range", "DELETE", "/targets/" + iqnA + "/luns/99999", "", "", 400, "lun"},
		{"resize to zero", "POST", tl + "/0/resize", "", `{"size": 0}`, 400, "size"},
		{"resize negative", "POST", tl + "/0/resize", "", `{"size": -512}`, 400, "size"},
		{"resize with a bad unit", "POST", tl + "/0/resize", "", `{"size": "3 parsecs"}`, 400, "size"},
		{"resize of a missing LUN", "POST", tl + "/7/resize", "", `{"size": 4096}`, 404, "lun"},
		{"snapshot with a path-like name", "POST", "/targets/iqn.2026-11.dev.lunway:bm/luns/0/snapshots", "", `{"name": "../x"}`, 400, "name"},
		{"clone of a missing snapshot", "POST", "/targets/iqn.2026-11.dev.lunway:bm/luns/0/clone", "", `{"snapshot": "nope", "volume": "c"}`, 404, "snapshot"},
		{"clone with target but no lun", "POST", "/targets/iqn.2026-11.dev.lunway:bm/luns/0/clone", "", `{"snapshot": "s", "volume": "c", "target": "` + iqnA + `"}`, 400, "lun"},
		{"bad ACL network", "POST", "/targets/" + iqnA + "/acl/networks", "", `{"network": "10.0.0.0/33"}`, 400, "networks[0]"},
		{"bad ACL initiator", "POST", "/targets/" + iqnA + "/acl/initiators", "", `{"initiator": "host1"}`, 400, "initiator"},
		{"CHAP without secret", "PUT", "/targets/" + iqnA + "/chap", "", `{"user": "u"}`, 400, "secret"},
		{"CHAP with both secrets", "PUT", "/targets/" + iqnA + "/chap", "", `{"user": "u", "secret": "s", "secret_file": "/f"}`, 400, "secret"},
		{"tag out of range", "POST", "/portal-groups", "", `{"tag": 70000, "listen": ["127.0.0.9:0"]}`, 400, "tag"},
		{"bad listen address", "POST", "/portal-groups", "", `{"tag": 9, "listen": ["nowhere"]}`, 400, "listen[0]"},
		{"bad ALUA state", "PATCH", "/portal-groups/1", "", `{"alua_state": "sleepy"}`, 400, "alua_state"},
		{"removing the last portal group", "DELETE", "/portal-groups/1", "", "", 400, "portal_groups"},
		{"session id not a number", "DELETE", "/sessions/abc", "", "", 400, "id"},
		{"missing session", "DELETE", "/sessions/123456", "", "", 404, "id"},
		{"oversized body", "POST", "/targets", "", big, 413, "body"},
		{"empty body", "POST", "/targets", "", "", 400, "body"},
		{"not JSON", "POST", "/targets", "", `name: x`, 400, "body"},
		{"trailing data", "POST", "/targets", "", `{"name": "iqn.2026-11.dev.lunway:x"} {}`, 400, "body"},
		{"array body", "POST", "/targets", "", `[]`, 400, "body"},
		{"wrong content type", "POST", "/targets", "text/plain", `{"name": "iqn.2026-11.dev.lunway:x"}`, 400, "body"},
		{"unknown path", "GET", "/nope", "", "", 404, ""},
		{"wrong method", "PUT", "/status", "", "", 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ct := tc.ctype
			if ct == "" && tc.body != "" {
				ct = "application/json"
			}
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			code, eb, raw := a.raw(tc.method, tc.path, ct, body)
			if code != tc.status || eb.Field != tc.field || eb.Error == "" {
				t.Errorf("got %d field %q (%s), want %d field %q", code, eb.Field, bytes.TrimSpace(raw), tc.status, tc.field)
			}
		})
	}
	fileAfter, err := os.ReadFile(a.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fileBefore, fileAfter) {
		t.Errorf("refused requests changed the configuration file:\n%s", fileAfter)
	}
	if ts := a.d.Targets(); len(ts) != 2 || len(ts[0].LUNs) != 1 || len(ts[0].ACL.Initiators)+len(ts[0].ACL.Networks) != 0 || ts[0].CHAP != nil {
		t.Errorf("refused requests changed the live state: %s", js(ts))
	}
}

// TestAPIConcurrentChanges: changes from many clients at once are
// serialized: none is lost, the file is never torn, and it ends equal to
// the live state.
func TestAPIConcurrentChanges(t *testing.T) {
	a := startAPIDaemon(t, baseYAML)
	const n = 12
	errs := make(chan error, 2*n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			ini := fmt.Sprintf("iqn.2026-01.com.example:host%d", i)
			errs <- a.c.Do(context.Background(), "POST", "/targets/"+iqnA+"/acl/initiators", api.InitiatorRequest{Initiator: ini}, nil)
		}()
		go func() {
			defer wg.Done()
			lc := config.LUN{LUN: uint64(10 + i), Size: 1 << 20, Backend: config.Backend{Type: "file", Path: fmt.Sprintf("c%d.img", i)}}
			w, err := api.WireValue(lc)
			if err == nil {
				err = a.c.Do(context.Background(), "POST", "/targets/"+iqnA+"/luns", w, nil)
			}
			errs <- err
		}()
	}
	// Meanwhile the file must always parse and validate.
	stop := make(chan struct{})
	readerDone := make(chan error, 1)
	go func() {
		var err error
		for err == nil {
			select {
			case <-stop:
				readerDone <- nil
				return
			default:
			}
			_, err = config.Load(a.cfgPath)
		}
		readerDone <- err
	}()
	wg.Wait()
	close(stop)
	if err := <-readerDone; err != nil {
		t.Errorf("the configuration file was unreadable during changes: %v", err)
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	tv, _ := a.target(iqnA)
	if len(tv.ACL.Initiators) != n || len(tv.LUNs) != n+1 {
		t.Errorf("live state lost updates: %d initiators, %d LUNs", len(tv.ACL.Initiators), len(tv.LUNs))
	}
	saved := a.savedConfig()
	if tc := saved.Targets[0]; tc.ACL == nil || len(tc.ACL.Initiators) != n || len(tc.LUNs) != n+1 {
		t.Errorf("saved file lost updates: %+v", tc)
	}
	var st api.Status
	a.do("GET", "/status", nil, &st)
	if st.ConfigChanges != 2*n || st.ConfigChangesFailed != 0 {
		t.Errorf("change counters %d/%d", st.ConfigChanges, st.ConfigChangesFailed)
	}
}

// TestAPIRollback: a change that fails halfway leaves the live state and
// the file as they were.
func TestAPIRollback(t *testing.T) {
	a := startAPIDaemon(t, baseYAML)
	before, _ := os.ReadFile(a.cfgPath)
	viewBefore := js(stripLive(a.d.Targets()))

	// A new target whose first LUN opens and whose second cannot (its
	// backing path is a directory): the first is closed again, nothing of
	// the target remains.
	if err := os.Mkdir(filepath.Join(a.dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	tc := config.Target{Name: iqnB, LUNs: []config.LUN{
		{LUN: 0, Size: 1 << 20, Backend: config.Backend{Type: "file", Path: "ok.img"}},
		{LUN: 1, Size: 1 << 20, Backend: config.Backend{Type: "file", Path: "adir"}},
	}}
	code, re := a.status("POST", "/targets", wire(t, tc))
	if code != http.StatusBadRequest || re.Body.Field != "luns[1].backend.path" {
		t.Fatalf("adding a target with a bad second LUN: %d %v", code, re)
	}
	if _, ok := a.target(iqnB); ok {
		t.Fatal("the failed target is listed")
	}
	if _, err := initiator.Dial(context.Background(), a.portal(), &initiator.Options{TargetName: iqnB}); err == nil {
		t.Fatal("the failed target accepts logins")
	}
	// The first LUN's file is closed: it can be served again at once.
	again := tc.LUNs[0]
	again.LUN = 5
	a.do("POST", "/targets/"+iqnA+"/luns", wire(t, again), nil)
	a.do("DELETE", "/targets/"+iqnA+"/luns/5", nil, nil)

	// A shrink the volume refuses (data beyond the new end) runs after the
	// save: the file is restored.
	a.do("POST", "/targets/"+iqnA+"/luns", wire(t, config.LUN{LUN: 7, Size: 4 << 20, Backend: config.Backend{
		Type: "blockmap", Volume: "v7", Store: &config.Store{Type: "dir", Path: "store"}}}), nil)
	sa := login(t, a.portal(), iqnA, ini1)
	sa.ClearUnitAttentions(context.Background(), 7)
	if res, err := sa.Write16(context.Background(), 7, (3<<20)/512, 512, bytes.Repeat([]byte{7}, 4096), true); err != nil || res.Err() != nil {
		t.Fatalf("write: %v %v", err, res.Err())
	}
	fileWith7, _ := os.ReadFile(a.cfgPath)
	if code, re := a.status("POST", "/targets/"+iqnA+"/luns/7/resize", api.ResizeRequest{Size: 1 << 20, AllowShrink: true}); code != http.StatusConflict || re.Body.Field != "size" {
		t.Errorf("shrinking over mapped data: %d %v", code, re)
	}
	if now, _ := os.ReadFile(a.cfgPath); !bytes.Equal(now, fileWith7) {
		t.Errorf("a refused shrink left the file changed:\n%s", now)
	}
	if l, _ := a.target(iqnA); l.LUNs[1].SizeBytes != 4<<20 {
		t.Errorf("size after a refused shrink: %d", l.LUNs[1].SizeBytes)
	}
	sa.Close()
	a.do("DELETE", "/targets/"+iqnA+"/luns/7", nil, nil)

	// Saving fails (its directory is gone): the change is undone live.
	b := startAPIDaemon(t, baseYAML)
	s := login(t, b.portal(), iqnA, ini1)
	// Grow LUN 0 and write at its end, for the shrink below.
	b.do("POST", "/targets/"+iqnA+"/luns/0/resize", api.ResizeRequest{Size: 2 << 20}, nil)
	s.ClearUnitAttentions(context.Background(), 0)
	tailData := bytes.Repeat([]byte("tail"), 1024)
	if res, err := s.Write16(context.Background(), 0, (3<<19)/512, 512, tailData, true); err != nil || res.Err() != nil {
		t.Fatalf("write: %v %v", err, res.Err())
	}
	if err := os.Rename(b.cfgPath, b.cfgPath+".moved"); err != nil {
		t.Fatal(err)
	}
	b.cfgPath = filepath.Join(b.dir, "gone", "lunway.yaml")
	b.d.configPath = b.cfgPath
	viewB := js(stripLive(b.d.Targets()))
	for _, req := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/targets/" + iqnA + "/luns", wire(t, config.LUN{LUN: 1, Size: 1 << 20, Backend: config.Backend{Type: "file", Path: "a1.img"}})},
		{"POST", "/targets/" + iqnA + "/luns/0/resize", api.ResizeRequest{Size: 4 << 20}},
		{"POST", "/targets/" + iqnA + "/luns/0/resize", api.ResizeRequest{Size: 1 << 20, AllowShrink: true}},
		{"PUT", "/targets/" + iqnA + "/acl", wire(t, config.ACL{Initiators: []string{"iqn.2026-01.com.example:other"}})},
		{"DELETE", "/targets/" + iqnA + "/luns/0", nil},
		{"DELETE", "/targets/" + iqnA, nil},
		{"POST", "/portal-groups", wire(t, config.Portal{Tag: 2, Listen: []string{"127.0.0.2:0"}})},
		{"PATCH", "/portal-groups/1", api.PortalGroupPatch{ALUAState: "standby"}},
	} {
		if code, re := b.status(req.method, req.path, req.body); code != http.StatusInternalServerError {
			t.Errorf("%s %s with an unwritable configuration: %d %v", req.method, req.path, code, re)
		}
		if got := js(stripLive(b.d.Targets())); got != viewB {
			t.Errorf("%s %s: failed save left the live state changed:\n%s", req.method, req.path, got)
		}
		if pgs := b.d.PortalGroups(); len(pgs) != 1 || pgs[0].ALUAState != "active-optimized" {
			t.Errorf("%s %s: portal groups after a failed save: %+v", req.method, req.path, pgs)
		}
	}
	// The session still works and sees the original LUN. (The undone
	// steps were visible for a moment: unit attentions tell it so.)
	s.ClearUnitAttentions(context.Background(), 0)
	if res, err := s.Read16(context.Background(), 0, 0, 512, make([]byte, 512)); err != nil || res.Err() != nil {
		t.Errorf("read after failed changes: %v %v", err, res.Err())
	}
	if c, err := s.ReadCapacity16(context.Background(), 0); err != nil || c.Blocks != 4096 {
		t.Errorf("capacity after failed resizes: %+v %v", c, err)
	}
	got := make([]byte, len(tailData))
	if res, err := s.Read16(context.Background(), 0, (3<<19)/512, 512, got); err != nil || res.Err() != nil || !bytes.Equal(got, tailData) {
		t.Errorf("data beyond a shrink whose save failed: %v %v, intact=%v", err, res, bytes.Equal(got, tailData))
	}
	if got := js(stripLive(a.d.Targets())); got != viewBefore {
		t.Errorf("live state after the rollback test:\n%s\nwant\n%s", got, viewBefore)
	}
	after, _ := os.ReadFile(a.cfgPath)
	if !bytes.Equal(before, normalizeFile(t, after, before)) {
		t.Errorf("file after the rollback test:\n%s", after)
	}
}

// normalizeFile returns got unchanged when it encodes the same
// configuration as want (the daemon rewrites the file in its own layout).
func normalizeFile(t *testing.T, got, want []byte) []byte {
	g, err1 := config.Parse(got)
	w, err2 := config.Parse(want)
	if err1 != nil || err2 != nil {
		return got
	}
	g.ApplyDefaults()
	w.ApplyDefaults()
	gb, _ := g.Marshal()
	wb, _ := w.Marshal()
	if bytes.Equal(gb, wb) {
		return want
	}
	return got
}

func loginErr(addr, target, initiatorName string) (*initiator.Session, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := initiator.Dial(ctx, addr, &initiator.Options{TargetName: target, InitiatorName: initiatorName})
	if err == nil {
		s.Close()
	}
	return s, err
}
