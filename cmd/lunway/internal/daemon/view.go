package daemon

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockmap"
	"github.com/lunway/lunway/cmd/lunway/internal/api"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"github.com/lunway/lunway/cmd/lunway/internal/metrics"
	"github.com/lunway/lunway/target/iscsi"
)

// The read side of api.Backend. Each view is built from one published
// configuration and the live objects published with it, under mu, so
// that it is consistent: a target or LUN appears once its change is
// committed and disappears once its removal is.

// snapshot is the published state at one instant.
type snapshot struct {
	cfg     *config.Config
	targets map[string]targetSnap
	addrs   map[string]string // configured portal address -> bound address
}

type targetSnap struct {
	t    *target
	luns map[uint64]*lun
}

func (d *Daemon) snap() snapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := snapshot{cfg: d.mu.cfg, targets: make(map[string]targetSnap, len(d.mu.targets)), addrs: map[string]string{}}
	for k, t := range d.mu.targets {
		luns := make(map[uint64]*lun, len(t.luns))
		for n, l := range t.luns {
			luns[n] = l
		}
		s.targets[k] = targetSnap{t: t, luns: luns}
	}
	for a, l := range d.mu.listeners {
		s.addrs[a] = l.ln.Addr().String()
	}
	return s
}

// lunOf returns a LUN's live object in s, or nil.
func (s snapshot) lunOf(target string, n uint64) *lun {
	return s.targets[strings.ToLower(target)].luns[n]
}

// health returns a LUN's health and, when not ok, why.
func (l *lun) health() (blockdev.Health, string) {
	if l == nil {
		return blockdev.Unavailable, "not open"
	}
	if l.pending {
		return blockdev.Unavailable, "backend not reachable yet: " + l.cause
	}
	if hr, ok := l.dev.(blockdev.HealthReporter); ok {
		h := hr.Health()
		if h != blockdev.Healthy {
			return h, "reported by the backend"
		}
		return h, ""
	}
	return blockdev.Healthy, ""
}

// Config implements api.Backend.
func (d *Daemon) Config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mu.cfg
}

// Targets implements api.Backend.
func (d *Daemon) Targets() []api.Target {
	s := d.snap()
	perTarget := map[string]int{}
	for _, si := range d.srv.Sessions() {
		perTarget[strings.ToLower(si.Target)]++
	}
	out := make([]api.Target, 0, len(s.cfg.Targets))
	for _, tc := range s.cfg.Targets {
		t := api.Target{Name: tc.Name, Alias: tc.Alias, PortalGroups: tc.PortalGroups, CHAP: api.CHAPView(tc.CHAP),
			LUNs: []api.LUN{}, Sessions: perTarget[strings.ToLower(tc.Name)],
			ACL: api.ACL{Initiators: []string{}, Networks: []string{}}}
		if t.PortalGroups == nil {
			t.PortalGroups = []uint16{}
		}
		if tc.ACL != nil {
			t.ACL.Initiators = append(t.ACL.Initiators, tc.ACL.Initiators...)
			t.ACL.Networks = append(t.ACL.Networks, tc.ACL.Networks...)
		}
		for _, lc := range tc.LUNs {
			t.LUNs = append(t.LUNs, lunView(tc.Name, lc, s.lunOf(tc.Name, lc.LUN)))
		}
		slices.SortFunc(t.LUNs, func(a, b api.LUN) int { return cmp.Compare(a.LUN, b.LUN) })
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b api.Target) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func lunView(target string, lc config.LUN, l *lun) api.LUN {
	v := api.LUN{Target: target, LUN: lc.LUN, SizeBytes: int64(lc.Size), ReadOnly: lc.ReadOnly,
		Backend: api.BackendView(lc.Backend), BackendType: lc.Backend.Type}
	h, _ := l.health()
	v.Health = h.String()
	if l != nil {
		v.SizeBytes = l.dev.Info().SizeBytes
		v.Serial, v.NAA, v.Pending = l.id.Serial, l.id.NAA, l.pending
		if l.lu != nil {
			v.InFlight = l.lu.Stats().InFlight
		}
	}
	return v
}

// PortalGroups implements api.Backend.
func (d *Daemon) PortalGroups() []api.PortalGroup {
	s := d.snap()
	perTag := map[uint16]int{}
	for _, si := range d.srv.Sessions() {
		perTag[si.PortalGroup]++
	}
	out := make([]api.PortalGroup, 0, len(s.cfg.Portals))
	for _, p := range s.cfg.Portals {
		pg := api.PortalGroup{Tag: p.Tag, Listen: slices.Clone(p.Listen), Addrs: []string{}, ALUAState: p.ALUAState,
			Sessions: perTag[p.Tag]}
		for _, a := range p.Listen {
			if b, ok := s.addrs[a]; ok {
				pg.Addrs = append(pg.Addrs, b)
			}
		}
		out = append(out, pg)
	}
	slices.SortFunc(out, func(a, b api.PortalGroup) int { return cmp.Compare(a.Tag, b.Tag) })
	return out
}

// Sessions implements api.Backend.
func (d *Daemon) Sessions() []api.Session {
	ss := d.srv.Sessions()
	out := make([]api.Session, 0, len(ss))
	for _, si := range ss {
		out = append(out, sessionView(si))
	}
	return out
}

func sessionView(si iscsi.SessionInfo) api.Session {
	return api.Session{ID: si.ID, Initiator: si.InitiatorName, ISID: fmt.Sprintf("%x", si.ISID[:]), TSIH: si.TSIH,
		Target: si.Target, Discovery: si.Discovery, PortalGroup: si.PortalGroup, Remote: si.RemoteAddr,
		Local: si.LocalAddr, Started: si.Start, InFlight: si.InFlight,
		HeaderDigest: si.Params.HeaderDigest, DataDigest: si.Params.DataDigest}
}

// backendOf names the backend a LUN lives on: the object store of a
// blockmap volume, otherwise the backing itself.
func backendOf(cfg *config.Config, lc config.LUN) (name, typ string) {
	if lc.Backend.Type == "blockmap" && lc.Backend.Store != nil {
		key, err := storeKey(cfg, lc.Backend.Store)
		if err == nil {
			return key, lc.Backend.Store.Type
		}
	}
	return backendKey(cfg, lc), lc.Backend.Type
}

// Health implements api.Backend.
func (d *Daemon) Health() api.Health {
	s := d.snap()
	out := api.Health{Status: blockdev.Healthy.String(), LUNs: []api.LUNHealth{}, Backends: []api.BackendHealth{}}
	worst := blockdev.Healthy
	for _, b := range d.backends(s) {
		out.Backends = append(out.Backends, api.BackendHealth{Name: b.Name, Type: b.Type, Health: b.Health.String(), LUNs: b.luns})
	}
	for _, tc := range s.cfg.Targets {
		for _, lc := range tc.LUNs {
			h, why := s.lunOf(tc.Name, lc.LUN).health()
			worst = max(worst, h)
			name, _ := backendOf(s.cfg, lc)
			out.LUNs = append(out.LUNs, api.LUNHealth{Target: tc.Name, LUN: lc.LUN, Health: h.String(), Backend: name, Reason: why})
		}
	}
	out.Status = worst.String()
	return out
}

type backendHealth struct {
	metrics.Backend
	luns []string
}

// backends groups the LUNs by backend: the store's own health report
// when it has one, otherwise the worst of its LUNs.
func (d *Daemon) backends(s snapshot) []backendHealth {
	byName := map[string]*backendHealth{}
	var order []string
	for _, tc := range s.cfg.Targets {
		for _, lc := range tc.LUNs {
			name, typ := backendOf(s.cfg, lc)
			b := byName[name]
			if b == nil {
				b = &backendHealth{Backend: metrics.Backend{Name: name, Type: typ, Health: blockdev.Healthy}}
				if h, ok := d.storeHealth(name); ok {
					b.Health = h
				}
				byName[name] = b
				order = append(order, name)
			}
			if _, own := d.storeHealth(name); !own {
				h, _ := s.lunOf(tc.Name, lc.LUN).health()
				b.Health = max(b.Health, h)
			}
			b.luns = append(b.luns, fmt.Sprintf("%s/%d", tc.Name, lc.LUN))
		}
	}
	slices.Sort(order)
	out := make([]backendHealth, 0, len(order))
	for _, n := range order {
		out = append(out, *byName[n])
	}
	return out
}

// storeHealth returns the health of a shared store that reports one.
func (d *Daemon) storeHealth(key string) (blockdev.Health, bool) {
	d.stores.Lock()
	defer d.stores.Unlock()
	s := d.stores.m[key]
	if s == nil {
		return 0, false
	}
	if hr, ok := s.store.(blockdev.HealthReporter); ok {
		return hr.Health(), true
	}
	return 0, false
}

// Status implements api.Backend.
func (d *Daemon) Status() api.Status {
	s := d.snap()
	st := api.Status{Version: d.version, PID: os.Getpid(), Started: d.started, ConfigPath: d.configPath,
		DataDir: s.cfg.DataDir, Targets: len(s.cfg.Targets), Portals: []string{}, API: d.services.apiAddrs,
		Metrics: d.services.metricsAddr, ConfigChanges: d.changes.Load(), ConfigChangesFailed: d.changesFailed.Load(),
		Sessions: len(d.srv.Sessions())}
	worst := blockdev.Healthy
	for _, tc := range s.cfg.Targets {
		st.LUNs += len(tc.LUNs)
		for _, lc := range tc.LUNs {
			h, _ := s.lunOf(tc.Name, lc.LUN).health()
			worst = max(worst, h)
		}
	}
	st.Health = worst.String()
	for _, p := range s.cfg.Portals {
		for _, a := range p.Listen {
			if b, ok := s.addrs[a]; ok {
				st.Portals = append(st.Portals, fmt.Sprintf("%s,%d", b, p.Tag))
			}
		}
	}
	if st.API == nil {
		st.API = []string{}
	}
	return st
}

// volumeStatser is what the metrics read from a blockmap volume (also
// through a wrapper that forwards it).
type volumeStatser interface {
	Stats() blockmap.Stats
}

// MetricsSnapshot implements metrics.Source.
func (d *Daemon) MetricsSnapshot() metrics.Snapshot {
	s := d.snap()
	out := metrics.Snapshot{Targets: d.srv.Stats(), Version: d.version,
		ConfigChanges: d.changes.Load(), ConfigChangesFailed: d.changesFailed.Load()}
	for _, tc := range s.cfg.Targets {
		for _, lc := range tc.LUNs {
			l := s.lunOf(tc.Name, lc.LUN)
			m := metrics.LUN{Target: tc.Name, LUN: lc.LUN, Backend: lc.Backend.Type}
			m.Health, _ = l.health()
			if l != nil {
				m.SizeBytes = l.dev.Info().SizeBytes
				if l.lu != nil {
					m.SCSI = l.lu.Stats()
				}
				if vs, ok := l.dev.(volumeStatser); ok && !l.pending {
					st := vs.Stats()
					m.Volume = &st
				}
				if l.cacheStats != nil {
					cs := l.cacheStats()
					m.Cache = &cs
				}
			}
			out.LUNs = append(out.LUNs, m)
		}
	}
	for _, b := range d.backends(s) {
		out.Backends = append(out.Backends, b.Backend)
	}
	return out
}
