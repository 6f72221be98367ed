package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/cmd/lunway/internal/api"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"github.com/lunway/lunway/target/iscsi"
)

// changeTimeout bounds one change (opening backends, resizing).
const changeTimeout = 2 * time.Minute

// retireWait bounds how long a removed LUN waits for its running commands
// before its device is closed.
const retireWait = 30 * time.Second

// txn is one change being applied. Steps that can fail run first and
// register how to undo themselves; steps that cannot be undone (ending
// sessions, closing listeners and devices) are deferred to commit, which
// runs after the configuration file is saved.
type txn struct {
	undo  []func()
	after []func()
	// late are steps that destroy data (shrinking a LUN): they run after
	// the save, so that a failed save cannot have cost data; one that
	// fails rolls everything back, the file included.
	late []func() error
	opts changeOptions
}

func (x *txn) onUndo(f func())       { x.undo = append(x.undo, f) }
func (x *txn) onCommit(f func())     { x.after = append(x.after, f) }
func (x *txn) onLate(f func() error) { x.late = append(x.late, f) }

// runLate runs the late steps, stopping at the first error.
func (x *txn) runLate() error {
	for _, f := range x.late {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// rollback undoes the steps done, newest first.
func (x *txn) rollback() {
	for i := len(x.undo) - 1; i >= 0; i-- {
		x.undo[i]()
	}
	x.undo, x.after = nil, nil
}

// commit runs the deferred steps, oldest first.
func (x *txn) commit() {
	for _, f := range x.after {
		f()
	}
	x.undo, x.after = nil, nil
}

// changeOptions are the knobs of one change.
type changeOptions struct {
	allowShrink bool
}

// Change implements api.Backend: mutate edits a copy of the current
// configuration; the result is validated as a whole, applied live, and
// saved atomically. On any failure the live state and the file stay as
// they were.
func (d *Daemon) Change(ctx context.Context, what string, mutate func(c *config.Config) error) error {
	d.change.Lock()
	defer d.change.Unlock()
	return d.changeLocked(ctx, what, mutate, changeOptions{})
}

// Resize implements api.Backend.
func (d *Daemon) Resize(ctx context.Context, target string, n uint64, sizeBytes int64, allowShrink bool) error {
	d.change.Lock()
	defer d.change.Unlock()
	what := fmt.Sprintf("resize LUN %d of %s to %s", n, target, config.Size(sizeBytes))
	return d.changeLocked(ctx, what, func(c *config.Config) error {
		lc, err := findLUNConfig(c, target, n)
		if err != nil {
			return err
		}
		lc.Size = config.Size(sizeBytes)
		return nil
	}, changeOptions{allowShrink: allowShrink})
}

func findLUNConfig(c *config.Config, target string, n uint64) (*config.LUN, error) {
	for i := range c.Targets {
		if !strings.EqualFold(c.Targets[i].Name, target) {
			continue
		}
		for j := range c.Targets[i].LUNs {
			if c.Targets[i].LUNs[j].LUN == n {
				return &c.Targets[i].LUNs[j], nil
			}
		}
		return nil, &api.Error{Field: "lun", Err: fmt.Errorf("%w: target %s has no LUN %d", api.ErrNotFound, target, n)}
	}
	return nil, &api.Error{Field: "target", Err: fmt.Errorf("%w: no target %s", api.ErrNotFound, target)}
}

func (d *Daemon) changeLocked(ctx context.Context, what string, mutate func(c *config.Config) error, opts changeOptions) (err error) {
	start := time.Now()
	peer := api.PeerFromContext(ctx)
	d.changes.Add(1)
	defer func() {
		if err != nil {
			d.changesFailed.Add(1)
			d.audit.Warn("configuration change refused", "change", what, "peer", peer, "err", err)
		} else {
			d.audit.Info("configuration changed", "change", what, "peer", peer, "duration", time.Since(start).Round(time.Millisecond))
		}
	}()
	d.mu.Lock()
	cur, closed := d.mu.cfg, d.mu.closed
	d.mu.Unlock()
	if closed {
		return fmt.Errorf("%w: the daemon is shutting down", api.ErrUnavailable)
	}
	// Both sides through the same encoding, so that only real changes
	// differ (an empty list and an absent one are the same).
	old, cand := cur.Clone(), cur.Clone()
	if err := mutate(cand); err != nil {
		return err
	}
	if len(cand.Portals) == 0 {
		// ApplyDefaults would put the default portal back.
		return &config.FieldError{Field: "portal_groups", Msg: "at least one portal group is required"}
	}
	cand.ApplyDefaults()
	if err := cand.Validate(); err != nil {
		return err
	}
	if err := restartOnly(old, cand); err != nil {
		return err
	}
	// The change goes on when the client goes away (a half-applied change
	// is rolled back, never left), bounded by the daemon's life.
	cctx, cancel := context.WithTimeout(d.ctx, changeTimeout)
	defer cancel()
	x := &txn{opts: opts}
	if err := d.apply(cctx, x, old, cand, false); err != nil {
		x.rollback()
		return err
	}
	if d.configPath != "" {
		if err := cand.Save(d.configPath); err != nil {
			x.rollback()
			return fmt.Errorf("saving %s (nothing was changed): %w", d.configPath, err)
		}
	}
	if err := x.runLate(); err != nil {
		x.rollback()
		if d.configPath != "" {
			if serr := cur.Save(d.configPath); serr != nil {
				d.log.Error("restoring the configuration file after a failed change; it describes the refused change",
					"path", d.configPath, "err", serr)
			}
		}
		return err
	}
	d.mu.Lock()
	d.mu.cfg = cand
	d.mu.Unlock()
	x.commit()
	return nil
}

// restartOnly refuses changes to the sections that are read only at
// start.
func restartOnly(old, cand *config.Config) error {
	for _, s := range []struct {
		field    string
		old, new any
	}{
		{"data_dir", old.DataDir, cand.DataDir},
		{"log", old.Log, cand.Log},
		{"iscsi", old.ISCSI, cand.ISCSI},
		{"api", old.API, cand.API},
		{"metrics", old.Metrics, cand.Metrics},
		{"discovery", old.Discovery, cand.Discovery},
	} {
		if !reflect.DeepEqual(s.old, s.new) {
			return &api.Error{Field: s.field, Err: fmt.Errorf("%w: %s cannot change while the daemon runs; edit the configuration file and restart", api.ErrNotSupported, s.field)}
		}
	}
	return nil
}

// apply brings the live state from old to cfg, recording undo and commit
// steps in x. At startup (old has no portals and no targets), remote
// backends that are down give pending LUNs instead of errors.
func (d *Daemon) apply(ctx context.Context, x *txn, old, cfg *config.Config, startup bool) error {
	if err := d.applyPortals(x, old, cfg); err != nil {
		return err
	}
	oldT := map[string]config.Target{}
	for _, t := range old.Targets {
		oldT[strings.ToLower(t.Name)] = t
	}
	newT := map[string]bool{}
	for i, tc := range cfg.Targets {
		key := strings.ToLower(tc.Name)
		newT[key] = true
		f := fmt.Sprintf("targets[%d]", i)
		if ot, ok := oldT[key]; ok {
			if err := d.changeTarget(ctx, x, cfg, ot, tc, f); err != nil {
				return err
			}
		} else if err := d.addTarget(ctx, x, cfg, tc, f, startup); err != nil {
			return err
		}
	}
	for key, ot := range oldT {
		if !newT[key] {
			d.removeTarget(x, key, ot.Name)
		}
	}
	return nil
}

// applyPortals opens new listeners and sets ALUA groups and states now,
// and closes removed listeners and groups at commit.
func (d *Daemon) applyPortals(x *txn, old, cfg *config.Config) error {
	oldPG := map[uint16]config.Portal{}
	for _, p := range old.Portals {
		oldPG[p.Tag] = p
	}
	newPG := map[uint16]config.Portal{}
	for i, p := range cfg.Portals {
		newPG[p.Tag] = p
		f := fmt.Sprintf("portal_groups[%d]", i)
		op, existed := oldPG[p.Tag]
		for j, a := range p.Listen {
			if !slices.Contains(op.Listen, a) {
				if err := d.listen(x, p.Tag, a, fmt.Sprintf("%s.listen[%d]", f, j)); err != nil {
					return err
				}
			}
		}
		for _, a := range op.Listen {
			if !slices.Contains(p.Listen, a) {
				x.onCommit(func() { d.unlisten(a) })
			}
		}
		g, err := portGroup(p, f)
		if err != nil {
			return err
		}
		switch {
		case !existed:
			if err := d.alua.SetGroup(g); err != nil {
				return &config.FieldError{Field: f, Msg: err.Error()}
			}
			x.onUndo(func() { d.alua.RemoveGroup(p.Tag) })
		case op.ALUAState != p.ALUAState:
			prev, _ := portGroup(op, f)
			if err := d.alua.SetState(p.Tag, g.State); err != nil {
				return &config.FieldError{Field: f + ".alua_state", Msg: err.Error()}
			}
			x.onUndo(func() { d.alua.SetState(p.Tag, prev.State) })
			d.audit.Info("ALUA state changed", "tpgt", p.Tag, "from", op.ALUAState, "to", p.ALUAState)
		}
	}
	for tag, op := range oldPG {
		if _, ok := newPG[tag]; ok {
			continue
		}
		x.onCommit(func() {
			for _, a := range op.Listen {
				d.unlisten(a)
			}
			for _, s := range d.srv.Sessions() {
				if s.PortalGroup == tag {
					d.audit.Info("ending session of a removed portal group", "session", s.ID, "tpgt", tag)
					d.srv.CloseSession(s.ID)
				}
			}
			d.alua.RemoveGroup(tag)
		})
	}
	return nil
}

// listen binds a portal address; it serves from commit on.
func (d *Daemon) listen(x *txn, tag uint16, addr, field string) error {
	ln, err := netListen(addr)
	if err != nil {
		msg := err.Error()
		if u := errors.Unwrap(err); u != nil {
			msg = u.Error()
		}
		return &config.FieldError{Field: field, Msg: fmt.Sprintf("cannot listen on %s: %s", addr, msg)}
	}
	l := &listener{addr: addr, tag: tag, ln: ln}
	d.mu.Lock()
	d.mu.listeners[addr] = l
	d.mu.Unlock()
	x.onUndo(func() {
		l.stopped.Store(true)
		ln.Close()
		d.mu.Lock()
		delete(d.mu.listeners, addr)
		d.mu.Unlock()
	})
	x.onCommit(func() { d.serve(l) })
	return nil
}

// unlisten closes a portal address. Sessions that came through it stay.
func (d *Daemon) unlisten(addr string) {
	d.mu.Lock()
	l := d.mu.listeners[addr]
	delete(d.mu.listeners, addr)
	d.mu.Unlock()
	if l != nil {
		l.stopped.Store(true)
		l.ln.Close()
		d.audit.Info("stopped listening", "portal", l.ln.Addr().String(), "tpgt", l.tag)
	}
}

// addTarget opens a new target's LUNs and registers it.
func (d *Daemon) addTarget(ctx context.Context, x *txn, cfg *config.Config, tc config.Target, field string, startup bool) error {
	t := d.newTarget(tc)
	for j, lc := range tc.LUNs {
		l, err := d.attachLUN(ctx, x, cfg, t, lc, fmt.Sprintf("%s.luns[%d]", field, j), startup)
		if err != nil {
			return err
		}
		_ = l
	}
	itc, err := d.iscsiTarget(t, tc, field)
	if err != nil {
		return err
	}
	if err := d.srv.AddTarget(itc); err != nil {
		if errors.Is(err, iscsi.ErrTargetExists) {
			return &api.Error{Field: field + ".name", Err: fmt.Errorf("%w: %v", api.ErrExists, err)}
		}
		return &config.FieldError{Field: field, Msg: err.Error()}
	}
	t.itc = itc
	key := strings.ToLower(tc.Name)
	d.mu.Lock()
	d.mu.targets[key] = t
	d.mu.Unlock()
	x.onUndo(func() {
		d.srv.RemoveTarget(tc.Name)
		d.mu.Lock()
		delete(d.mu.targets, key)
		d.mu.Unlock()
	})
	x.onCommit(func() {
		luns := make([]uint64, 0, len(tc.LUNs))
		for _, lc := range tc.LUNs {
			luns = append(luns, lc.LUN)
		}
		slices.Sort(luns)
		d.audit.Info("target ready", "target", tc.Name, "luns", luns)
	})
	return nil
}

// attachLUN opens a LUN and attaches it to t (visible at once when t is
// already registered).
func (d *Daemon) attachLUN(ctx context.Context, x *txn, cfg *config.Config, t *target, lc config.LUN, field string, startup bool) (*lun, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", api.ErrUnavailable, err)
	}
	l, err := d.openLUN(cfg, t, lc, field, startup)
	if err != nil {
		return nil, err
	}
	x.onUndo(func() { l.close() })
	if l.lu != nil {
		if err := t.scsi.AddLU(lc.LUN, l.lu); err != nil {
			return nil, &config.FieldError{Field: field + ".lun", Msg: err.Error()}
		}
		x.onUndo(func() { t.scsi.RemoveLU(lc.LUN) })
	}
	d.mu.Lock()
	t.luns[lc.LUN] = l
	d.mu.Unlock()
	x.onUndo(func() {
		d.mu.Lock()
		if t.luns[lc.LUN] == l {
			delete(t.luns, lc.LUN)
		}
		d.mu.Unlock()
	})
	x.onCommit(func() {
		if l.pending {
			d.startRetry(t, l, field)
		} else {
			d.logLUNReady(t, l)
		}
	})
	return l, nil
}

// removeTarget ends a target's sessions and closes its LUNs, at commit.
func (d *Daemon) removeTarget(x *txn, key, name string) {
	x.onCommit(func() {
		d.mu.Lock()
		t := d.mu.targets[key]
		d.mu.Unlock()
		if t == nil {
			return
		}
		if err := d.srv.RemoveTarget(name); err != nil {
			d.log.Error("removing target", "target", name, "err", err)
		}
		d.mu.Lock()
		delete(d.mu.targets, key)
		luns := t.luns
		t.luns = map[uint64]*lun{}
		d.mu.Unlock()
		for n, l := range luns {
			t.scsi.RemoveLU(n)
			d.retire(l, retireWait)
		}
		d.audit.Info("target removed", "target", name)
	})
}

// changeTarget applies the differences between two versions of a target:
// LUNs added, removed and resized, and its iSCSI settings.
func (d *Daemon) changeTarget(ctx context.Context, x *txn, cfg *config.Config, ot, nt config.Target, field string) error {
	key := strings.ToLower(nt.Name)
	d.mu.Lock()
	t := d.mu.targets[key]
	d.mu.Unlock()
	if t == nil {
		return fmt.Errorf("%w: target %s is not running", api.ErrUnavailable, nt.Name)
	}
	oldL := map[uint64]config.LUN{}
	for _, lc := range ot.LUNs {
		oldL[lc.LUN] = lc
	}
	newL := map[uint64]bool{}
	for j, lc := range nt.LUNs {
		newL[lc.LUN] = true
		lf := fmt.Sprintf("%s.luns[%d]", field, j)
		olc, existed := oldL[lc.LUN]
		if !existed {
			if _, err := d.attachLUN(ctx, x, cfg, t, lc, lf, false); err != nil {
				return err
			}
			continue
		}
		if err := sameLUN(olc, lc, lf); err != nil {
			return err
		}
		if olc.Size != lc.Size {
			if err := d.resizeLUN(ctx, x, t, lc, lf); err != nil {
				return err
			}
		}
	}
	for n := range oldL {
		if !newL[n] {
			d.detachLUN(x, t, n)
		}
	}
	if !reflect.DeepEqual(accessOf(ot), accessOf(nt)) {
		itc, err := d.iscsiTarget(t, nt, field)
		if err != nil {
			return err
		}
		if err := d.srv.UpdateTarget(itc); err != nil {
			return &config.FieldError{Field: field, Msg: err.Error()}
		}
		prev := t.itc
		d.mu.Lock()
		t.itc = itc
		d.mu.Unlock()
		x.onUndo(func() {
			if err := d.srv.UpdateTarget(prev); err != nil {
				d.log.Error("rolling back target settings", "target", nt.Name, "err", err)
			}
			d.mu.Lock()
			t.itc = prev
			d.mu.Unlock()
		})
	}
	d.mu.Lock()
	t.cfg = nt
	d.mu.Unlock()
	x.onUndo(func() {
		d.mu.Lock()
		t.cfg = ot
		d.mu.Unlock()
	})
	return nil
}

// access is what UpdateTarget changes.
type access struct {
	Alias        string
	PortalGroups []uint16
	ACL          *config.ACL
	CHAP         *config.CHAP
}

func accessOf(t config.Target) access {
	return access{t.Alias, t.PortalGroups, t.ACL, t.CHAP}
}

// sameLUN refuses changes other than the size to an existing LUN.
func sameLUN(a, b config.LUN, field string) error {
	a.Size, b.Size = 0, 0
	if !reflect.DeepEqual(a, b) {
		return &api.Error{Field: field, Err: fmt.Errorf("%w: only the size of an existing LUN changes live; remove the LUN and add it again", api.ErrNotSupported)}
	}
	return nil
}

// detachLUN takes a LUN out of its target now (initiators see REPORTED
// LUNS DATA HAS CHANGED) and closes it at commit.
func (d *Daemon) detachLUN(x *txn, t *target, n uint64) {
	d.mu.Lock()
	l := t.luns[n]
	delete(t.luns, n)
	d.mu.Unlock()
	if l == nil {
		return
	}
	if l.lu != nil {
		t.scsi.RemoveLU(n)
	}
	x.onUndo(func() {
		if l.lu != nil {
			if err := t.scsi.AddLU(n, l.lu); err != nil {
				d.log.Error("rolling back a LUN removal", "target", t.cfg.Name, "lun", n, "err", err)
			}
		}
		d.mu.Lock()
		t.luns[n] = l
		d.mu.Unlock()
	})
	x.onCommit(func() {
		d.retire(l, retireWait)
		d.audit.Info("LUN removed", "target", t.cfg.Name, "lun", n)
	})
}

// resizeLUN changes a LUN's capacity; initiators see CAPACITY DATA HAS
// CHANGED.
func (d *Daemon) resizeLUN(ctx context.Context, x *txn, t *target, lc config.LUN, field string) error {
	d.mu.Lock()
	l := t.luns[lc.LUN]
	d.mu.Unlock()
	if l == nil || l.pending || l.lu == nil {
		return &api.Error{Field: field + ".size", Err: fmt.Errorf("%w: the LUN's backend is not open yet", api.ErrUnavailable)}
	}
	r, ok := l.dev.(blockdev.Resizer)
	if !ok {
		return &api.Error{Field: field + ".size", Err: fmt.Errorf("%w: a %s LUN cannot be resized", api.ErrNotSupported, lc.Backend.Type)}
	}
	cur := l.dev.Info().SizeBytes
	size := int64(lc.Size)
	if size == cur {
		return nil
	}
	if size < cur && !x.opts.allowShrink {
		return &api.Error{Field: "size", Err: fmt.Errorf("%w: %s is smaller than the current %s; shrinking drops the data beyond the new end, pass allow_shrink to do it",
			api.ErrInUse, config.Size(size), config.Size(cur))}
	}
	if size < cur {
		// Shrinking drops data: only once the change is saved.
		x.onLate(func() error { return d.resizeDevice(ctx, x, t, l, r, cur, size) })
		return nil
	}
	return d.resizeDevice(ctx, x, t, l, r, cur, size)
}

// resizeDevice resizes l's device from cur to size, registering the undo.
func (d *Daemon) resizeDevice(ctx context.Context, x *txn, t *target, l *lun, r blockdev.Resizer, cur, size int64) error {
	lc := l.cfg
	if err := r.Resize(ctx, size); err != nil {
		kind := error(nil)
		switch {
		case errors.Is(err, blockdev.ErrInUse):
			kind = api.ErrInUse
		case errors.Is(err, blockdev.ErrNotSupported), errors.Is(err, blockdev.ErrReadOnly), errors.Is(err, blockdev.ErrUnaligned):
			kind = api.ErrNotSupported
		case errors.Is(err, blockdev.ErrUnavailable):
			kind = api.ErrUnavailable
		}
		if kind != nil {
			return &api.Error{Field: "size", Err: fmt.Errorf("%w: %v", kind, err)}
		}
		return fmt.Errorf("resizing %s LUN %d: %w", t.cfg.Name, lc.LUN, err)
	}
	l.lu.CapacityChanged()
	d.audit.Info("LUN resized", "target", t.cfg.Name, "lun", lc.LUN, "from", config.Size(cur).String(), "to", config.Size(size).String())
	x.onUndo(func() {
		if err := r.Resize(context.Background(), cur); err != nil {
			d.log.Error("rolling back a resize", "target", t.cfg.Name, "lun", lc.LUN, "err", err)
		}
		l.lu.CapacityChanged()
	})
	x.onCommit(func() {
		if err := d.ids.setSize(l.key, size); err != nil {
			d.log.Warn("cannot record LUN size", "err", err)
		}
	})
	return nil
}

// netListen binds a TCP portal address.
func netListen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
