package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lunway/lunway/cmd/lunway/internal/config"
)

// Handler serves the API of b under Prefix. log receives one debug line
// per request (changes are logged by the Backend).
func Handler(b Backend, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{b: b, log: log}
	mux := http.NewServeMux()
	route := func(pattern string, fn func(w http.ResponseWriter, r *http.Request) error) {
		method, path, _ := strings.Cut(pattern, " ")
		mux.HandleFunc(method+" "+Prefix+path, func(w http.ResponseWriter, r *http.Request) {
			if err := fn(w, r); err != nil {
				h.fail(w, err)
			}
		})
	}
	route("GET /status", func(w http.ResponseWriter, r *http.Request) error { return ok(w, b.Status()) })
	route("GET /health", func(w http.ResponseWriter, r *http.Request) error { return ok(w, b.Health()) })
	route("GET /config", h.getConfig)

	route("GET /targets", func(w http.ResponseWriter, r *http.Request) error { return ok(w, b.Targets()) })
	route("POST /targets", h.addTarget)
	route("GET /targets/{target}", h.getTarget)
	route("PATCH /targets/{target}", h.patchTarget)
	route("DELETE /targets/{target}", h.removeTarget)

	route("GET /targets/{target}/luns", h.listLUNs)
	route("POST /targets/{target}/luns", h.addLUN)
	route("GET /targets/{target}/luns/{lun}", h.getLUN)
	route("DELETE /targets/{target}/luns/{lun}", h.removeLUN)
	route("POST /targets/{target}/luns/{lun}/resize", h.resizeLUN)
	route("GET /targets/{target}/luns/{lun}/snapshots", h.listSnapshots)
	route("POST /targets/{target}/luns/{lun}/snapshots", h.addSnapshot)
	route("DELETE /targets/{target}/luns/{lun}/snapshots/{snapshot}", h.removeSnapshot)
	route("POST /targets/{target}/luns/{lun}/clone", h.clone)

	route("GET /targets/{target}/acl", h.getACL)
	route("PUT /targets/{target}/acl", h.putACL)
	route("POST /targets/{target}/acl/initiators", h.addInitiator)
	route("DELETE /targets/{target}/acl/initiators/{initiator}", h.removeInitiator)
	route("POST /targets/{target}/acl/networks", h.addNetwork)
	route("DELETE /targets/{target}/acl/networks", h.removeNetwork)
	route("GET /targets/{target}/chap", h.getCHAP)
	route("PUT /targets/{target}/chap", h.putCHAP)
	route("DELETE /targets/{target}/chap", h.removeCHAP)

	route("GET /portal-groups", func(w http.ResponseWriter, r *http.Request) error { return ok(w, b.PortalGroups()) })
	route("POST /portal-groups", h.addPortalGroup)
	route("GET /portal-groups/{tag}", h.getPortalGroup)
	route("PATCH /portal-groups/{tag}", h.patchPortalGroup)
	route("DELETE /portal-groups/{tag}", h.removePortalGroup)
	route("POST /portal-groups/{tag}/listen", h.addListen)
	route("DELETE /portal-groups/{tag}/listen/{address}", h.removeListen)

	route("GET /sessions", func(w http.ResponseWriter, r *http.Request) error { return ok(w, b.Sessions()) })
	route("DELETE /sessions/{id}", h.dropSession)

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		jw := &jsonErrors{ResponseWriter: w}
		mux.ServeHTTP(jw, r)
		log.Debug("api request", "method", r.Method, "path", r.URL.Path, "status", jw.status(),
			"duration", time.Since(start), "peer", PeerFromContext(r.Context()))
	})
}

type handler struct {
	b   Backend
	log *slog.Logger
}

// jsonErrors turns the mux's own plain-text 404 and 405 answers into
// JSON errors like every other.
type jsonErrors struct {
	http.ResponseWriter
	code    int
	swallow bool
}

func (j *jsonErrors) WriteHeader(code int) {
	j.code = code
	if (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) &&
		strings.HasPrefix(j.Header().Get("Content-Type"), "text/plain") {
		j.swallow = true
		j.Header().Set("Content-Type", "application/json")
		j.Header().Del("X-Content-Type-Options")
		j.ResponseWriter.WriteHeader(code)
		msg := "no such API path (see docs/OPERATIONS.md)"
		if code == http.StatusMethodNotAllowed {
			msg = "method not allowed on this path"
		}
		json.NewEncoder(j.ResponseWriter).Encode(ErrorBody{Error: msg})
		return
	}
	j.ResponseWriter.WriteHeader(code)
}

func (j *jsonErrors) Write(p []byte) (int, error) {
	if j.swallow {
		return len(p), nil
	}
	if j.code == 0 {
		j.code = http.StatusOK
	}
	return j.ResponseWriter.Write(p)
}

func (j *jsonErrors) status() int {
	if j.code == 0 {
		return http.StatusOK
	}
	return j.code
}

func ok(w http.ResponseWriter, v any) error { return reply(w, http.StatusOK, v) }

func reply(w http.ResponseWriter, code int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if code == http.StatusNoContent {
		w.WriteHeader(code)
		return nil
	}
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	w.WriteHeader(code)
	w.Write(append(data, '\n'))
	return nil
}

// StatusOf maps an error to an HTTP status.
func StatusOf(err error) int {
	var fe *config.FieldError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrExists), errors.Is(err, ErrInUse):
		return http.StatusConflict
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrNotSupported), errors.Is(err, ErrInvalid), errors.As(err, &fe):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func (h *handler) fail(w http.ResponseWriter, err error) {
	code := StatusOf(err)
	body := ErrorBody{Error: err.Error()}
	var fe *config.FieldError
	var ae *Error
	switch {
	case errors.As(err, &fe):
		body.Field, body.Error = fe.Field, fe.Msg
	case errors.As(err, &ae):
		body.Field = ae.Field
		body.Error = ae.Err.Error()
	}
	if code == http.StatusRequestEntityTooLarge {
		body = ErrorBody{Field: "body", Error: fmt.Sprintf("larger than %d bytes", MaxBodyBytes)}
	}
	if code >= 500 {
		h.log.Error("api request failed", "err", err)
	}
	reply(w, code, body)
}

// readBody decodes the request body strictly into v.
func readBody(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return &config.FieldError{Field: "body", Msg: "Content-Type must be application/json, not " + ct}
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		return err
	}
	return Decode(data, v)
}

// Path parameters, validated.

func targetParam(r *http.Request) (string, error) {
	name := r.PathValue("target")
	if !config.ValidISCSIName(name) {
		return "", &Error{Field: "target", Err: fmt.Errorf("%w: %q is not a valid iSCSI name", ErrInvalid, name)}
	}
	return name, nil
}

func lunParam(r *http.Request) (uint64, error) {
	s := r.PathValue("lun")
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > 16383 {
		return 0, &Error{Field: "lun", Err: fmt.Errorf("%w: %q is not a LUN number (0..16383)", ErrInvalid, s)}
	}
	return n, nil
}

func tagParam(r *http.Request) (uint16, error) {
	s := r.PathValue("tag")
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, &Error{Field: "tag", Err: fmt.Errorf("%w: %q is not a portal group tag (1..65535)", ErrInvalid, s)}
	}
	return uint16(n), nil
}

func snapshotParam(r *http.Request) (string, error) {
	s := r.PathValue("snapshot")
	if !config.ValidVolumeName(s) {
		return "", &Error{Field: "snapshot", Err: fmt.Errorf("%w: %q is not a valid snapshot name", ErrInvalid, s)}
	}
	return s, nil
}

// Lookups in a configuration under change.

func findTarget(c *config.Config, name string) (int, error) {
	for i := range c.Targets {
		if strings.EqualFold(c.Targets[i].Name, name) {
			return i, nil
		}
	}
	return 0, &Error{Field: "target", Err: fmt.Errorf("%w: no target %s", ErrNotFound, name)}
}

func findLUN(c *config.Config, target string, lun uint64) (int, int, error) {
	i, err := findTarget(c, target)
	if err != nil {
		return 0, 0, err
	}
	for j := range c.Targets[i].LUNs {
		if c.Targets[i].LUNs[j].LUN == lun {
			return i, j, nil
		}
	}
	return 0, 0, &Error{Field: "lun", Err: fmt.Errorf("%w: target %s has no LUN %d", ErrNotFound, target, lun)}
}

func findPortal(c *config.Config, tag uint16) (int, error) {
	for i := range c.Portals {
		if c.Portals[i].Tag == tag {
			return i, nil
		}
	}
	return 0, &Error{Field: "tag", Err: fmt.Errorf("%w: no portal group %d", ErrNotFound, tag)}
}

// relative rewrites a FieldError on the configuration path prefix (e.g.
// "targets[3].luns[0]") to the request's own field names.
func relative(err error, prefix string) error {
	var fe *config.FieldError
	if prefix == "" || !errors.As(err, &fe) {
		return err
	}
	if f, ok := strings.CutPrefix(fe.Field, prefix+"."); ok {
		return &config.FieldError{Field: f, Msg: fe.Msg}
	}
	return err
}

// checkPaths refuses backend paths that are not in clean form: "..",
// repeated or trailing slashes. Names elsewhere are validated by the
// configuration (iSCSI names, volume names).
func checkPaths(b *config.Backend, field string) error {
	check := func(f, p string) error {
		if p == "" {
			return nil
		}
		if filepath.Clean(p) != p || slices.Contains(strings.Split(p, "/"), "..") {
			return &config.FieldError{Field: f, Msg: fmt.Sprintf("%q is not a clean path (no .., no repeated or trailing /)", p)}
		}
		return nil
	}
	if err := check(join(field, "path"), b.Path); err != nil {
		return err
	}
	if b.Store != nil {
		if err := check(join(field, "store.path"), b.Store.Path); err != nil {
			return err
		}
	}
	if b.Cache != nil {
		if err := check(join(field, "cache.path"), b.Cache.Path); err != nil {
			return err
		}
	}
	return nil
}

func (h *handler) view(name string) (Target, error) {
	for _, t := range h.b.Targets() {
		if strings.EqualFold(t.Name, name) {
			return t, nil
		}
	}
	return Target{}, &Error{Field: "target", Err: fmt.Errorf("%w: no target %s", ErrNotFound, name)}
}

func (h *handler) lunView(target string, lun uint64) (LUN, error) {
	t, err := h.view(target)
	if err != nil {
		return LUN{}, err
	}
	for _, l := range t.LUNs {
		if l.LUN == lun {
			return l, nil
		}
	}
	return LUN{}, &Error{Field: "lun", Err: fmt.Errorf("%w: target %s has no LUN %d", ErrNotFound, target, lun)}
}

func (h *handler) getConfig(w http.ResponseWriter, r *http.Request) error {
	c := Redact(h.b.Config())
	v, err := WireValue(c)
	if err != nil {
		return err
	}
	return ok(w, v)
}

// Redact returns a copy of c without secrets.
func Redact(c *config.Config) *config.Config {
	c = c.Clone()
	redactCHAP := func(ch *config.CHAP) {
		if ch == nil {
			return
		}
		if ch.Secret != "" {
			ch.Secret = Redacted
		}
		if ch.MutualSecret != "" {
			ch.MutualSecret = Redacted
		}
	}
	redactCHAP(c.Discovery.CHAP)
	for i := range c.Targets {
		redactCHAP(c.Targets[i].CHAP)
		for j := range c.Targets[i].LUNs {
			redactBackend(&c.Targets[i].LUNs[j].Backend)
		}
	}
	return c
}

func redactBackend(b *config.Backend) {
	if b.Store != nil && b.Store.S3 != nil && b.Store.S3.SecretKey != "" {
		s3 := *b.Store.S3
		s3.SecretKey = Redacted
		st := *b.Store
		st.S3 = &s3
		b.Store = &st
	}
}

// BackendView is the JSON form of a LUN's backend section, secrets
// redacted.
func BackendView(b config.Backend) map[string]any {
	redactBackend(&b)
	v, err := WireValue(b)
	if err != nil {
		return map[string]any{"type": b.Type}
	}
	m, _ := v.(map[string]any)
	return m
}

// CHAPView is the redacted form of a CHAP section.
func CHAPView(c *config.CHAP) *CHAP {
	if c == nil {
		return nil
	}
	out := &CHAP{User: c.User, SecretFile: c.SecretFile, MutualUser: c.MutualUser, MutualSecretFile: c.MutualSecretFile}
	if c.Secret != "" {
		out.Secret = Redacted
	}
	if c.MutualSecret != "" {
		out.MutualSecret = Redacted
	}
	return out
}

// Targets.

func (h *handler) addTarget(w http.ResponseWriter, r *http.Request) error {
	var tc config.Target
	if err := readBody(w, r, &tc); err != nil {
		return err
	}
	if !config.ValidISCSIName(tc.Name) {
		return &config.FieldError{Field: "name", Msg: fmt.Sprintf("%q is not a valid iSCSI name (iqn.YYYY-MM.reversed.domain[:id], lower case)", tc.Name)}
	}
	for j := range tc.LUNs {
		if err := checkPaths(&tc.LUNs[j].Backend, fmt.Sprintf("luns[%d].backend", j)); err != nil {
			return err
		}
	}
	var prefix string
	err := h.b.Change(r.Context(), "add target "+tc.Name, func(c *config.Config) error {
		if _, err := findTarget(c, tc.Name); err == nil {
			return &Error{Field: "name", Err: fmt.Errorf("%w: target %s", ErrExists, tc.Name)}
		}
		prefix = fmt.Sprintf("targets[%d]", len(c.Targets))
		c.Targets = append(c.Targets, tc)
		return nil
	})
	if err != nil {
		return relative(err, prefix)
	}
	t, err := h.view(tc.Name)
	if err != nil {
		return err
	}
	return reply(w, http.StatusCreated, t)
}

func (h *handler) getTarget(w http.ResponseWriter, r *http.Request) error {
	name, err := targetParam(r)
	if err != nil {
		return err
	}
	t, err := h.view(name)
	if err != nil {
		return err
	}
	return ok(w, t)
}

func (h *handler) patchTarget(w http.ResponseWriter, r *http.Request) error {
	name, err := targetParam(r)
	if err != nil {
		return err
	}
	var p TargetPatch
	if err := readBody(w, r, &p); err != nil {
		return err
	}
	var prefix string
	err = h.b.Change(r.Context(), "change target "+name, func(c *config.Config) error {
		i, err := findTarget(c, name)
		if err != nil {
			return err
		}
		prefix = fmt.Sprintf("targets[%d]", i)
		if p.Alias != nil {
			c.Targets[i].Alias = *p.Alias
		}
		if p.PortalGroups != nil {
			c.Targets[i].PortalGroups = *p.PortalGroups
		}
		return nil
	})
	if err != nil {
		return relative(err, prefix)
	}
	t, err := h.view(name)
	if err != nil {
		return err
	}
	return ok(w, t)
}

func (h *handler) removeTarget(w http.ResponseWriter, r *http.Request) error {
	name, err := targetParam(r)
	if err != nil {
		return err
	}
	err = h.b.Change(r.Context(), "remove target "+name, func(c *config.Config) error {
		i, err := findTarget(c, name)
		if err != nil {
			return err
		}
		c.Targets = slices.Delete(c.Targets, i, i+1)
		return nil
	})
	if err != nil {
		return err
	}
	return reply(w, http.StatusNoContent, nil)
}

// LUNs.

func (h *handler) listLUNs(w http.ResponseWriter, r *http.Request) error {
	name, err := targetParam(r)
	if err != nil {
		return err
	}
	t, err := h.view(name)
	if err != nil {
		return err
	}
	return ok(w, t.LUNs)
}

func (h *handler) addLUN(w http.ResponseWriter, r *http.Request) error {
	name, err := targetParam(r)
	if err != nil {
		return err
	}
	var lc config.LUN
	if err := readBody(w, r, &lc); err != nil {
		return err
	}
	if err := checkPaths(&lc.Backend, "backend"); err != nil {
		return err
	}
	var prefix string
	err = h.b.Change(r.Context(), fmt.Sprintf("add LUN %d to %s", lc.LUN, name), func(c *config.Config) error {
		i, err := findTarget(c, name)
		if err != nil {
			return err
		}
		for _, l := range c.Targets[i].LUNs {
			if l.LUN == lc.LUN {
				return &Error{Field: "lun", Err: fmt.Errorf("%w: target %s has LUN %d", ErrExists, name, lc.LUN)}
			}
		}
		prefix = fmt.Sprintf("targets[%d].luns[%d]", i, len(c.Targets[i].LUNs))
		c.Targets[i].LUNs = append(c.Targets[i].LUNs, lc)
		return nil
	})
	if err != nil {
		return relative(err, prefix)
	}
	l, err := h.lunView(name, lc.LUN)
	if err != nil {
		return err
	}
	return reply(w, http.StatusCreated, l)
}

func (h *handler) getLUN(w http.ResponseWriter, r *http.Request) error {
	name, err := targetParam(r)
	if err != nil {
		return err
	}
	n, err := lunParam(r)
	if err != nil {
		return err
	}
	l, err := h.lunView(name, n)
	if err != nil {
		return err
	}
	return ok(w, l)
}

func (h *handler) removeLUN(w http.ResponseWriter, r *http.Request) error {
	name, err := targetParam(r)
	if err != nil {
		return err
	}
	n, err := lunParam(r)
	if err != nil {
		return err
	}
	err = h.b.Change(r.Context(), fmt.Sprintf("remove LUN %d of %s", n, name), func(c *config.Config) error {
		i, j, err := findLUN(c, name, n)
		if err != nil {
			return err
		}
		c.Targets[i].LUNs = slices.Delete(c.Targets[i].LUNs, j, j+1)
		return nil
	})
	if err != nil {
		return err
	}
	return reply(w, http.StatusNoContent, nil)
}

func (h *handler) resizeLUN(w http.ResponseWriter, r *http.Request) error {
	name, err := targetParam(r)
	if err != nil {
		return err
	}
	n, err := lunParam(r)
	if err != nil {
		return err
	}
	var req ResizeRequest
	if err := readBody(w, r, &req); err != nil {
		return err
	}
	if req.Size <= 0 || req.Size%512 != 0 {
		return &config.FieldError{Field: "size", Msg: fmt.Sprintf("%d is not a positive multiple of 512 bytes", req.Size)}
	}
	if err := h.b.Resize(r.Context(), name, n, int64(req.Size), req.AllowShrink); err != nil {
		return err
	}
	l, err := h.lunView(name, n)
	if err != nil {
		return err
	}
	return ok(w, l)
}

func (h *handler) listSnapshots(w http.ResponseWriter, r *http.Request) error {
	name, err := targetParam(r)
	if err != nil {
		return err
	}
	n, err := lunParam(r)
	if err != nil {
		return err
	}
	snaps, err := h.b.Snapshots(r.Context(), name, n)
	if err != nil {
		return err
	}
	if snaps == nil {
		snaps = []Snapshot{}
	}
	return ok(w, snaps)
}

func (h *handler) addSnapshot(w http.ResponseWriter, r *http.Request) error {
	name, err := targetParam(r)
	if err != nil {
		return err
	}
	n, err := lunParam(r)
	if err != nil {
		return err
	}
	var req SnapshotRequest
	if err := readBody(w, r, &req); err != nil {
		return err
	}
	if !config.ValidVolumeName(req.Name) {
		return &config.FieldError{Field: "name", Msg: fmt.Sprintf("%q is not a valid snapshot name ([A-Za-z0-9][A-Za-z0-9_.-]{0,63})", req.Name)}
	}
	if err := h.b.Snapshot(r.Context(), name, n, req.Name); err != nil {
		return err
	}
	snaps, err := h.b.Snapshots(r.Context(), name, n)
	if err != nil {
		return err
	}
	for _, s := range snaps {
		if s.Name == req.Name {
			return reply(w, http.StatusCreated, s)
		}
	}
	return reply(w, http.StatusCreated, Snapshot{Name: req.Name})
}

func (h *handler) removeSnapshot(w http.ResponseWriter, r *http.Request) error {
	name, err := targetParam(r)
	if err != nil {
		return err
	}
	n, err := lunParam(r)
	if err != nil {
		return err
	}
	snap, err := snapshotParam(r)
	if err != nil {
		return err
	}
	if err := h.b.DeleteSnapshot(r.Context(), name, n, snap); err != nil {
		return err
	}
	return reply(w, http.StatusNoContent, nil)
}

func (h *handler) clone(w http.ResponseWriter, r *http.Request) error {
	name, err := targetParam(r)
	if err != nil {
		return err
	}
	n, err := lunParam(r)
	if err != nil {
		return err
	}
	var req CloneRequest
	if err := readBody(w, r, &req); err != nil {
		return err
	}
	if !config.ValidVolumeName(req.Snapshot) {
		return &config.FieldError{Field: "snapshot", Msg: fmt.Sprintf("%q is not a valid snapshot name", req.Snapshot)}
	}
	if !config.ValidVolumeName(req.Volume) {
		return &config.FieldError{Field: "volume", Msg: fmt.Sprintf("%q is not a valid volume name ([A-Za-z0-9][A-Za-z0-9_.-]{0,63})", req.Volume)}
	}
	if (req.Target == "") != (req.LUN == nil) {
		return &config.FieldError{Field: "lun", Msg: "target and lun go together (both to serve the clone, neither to only create it)"}
	}
	if req.Target != "" && !config.ValidISCSIName(req.Target) {
		return &config.FieldError{Field: "target", Msg: fmt.Sprintf("%q is not a valid iSCSI name", req.Target)}
	}
	if req.LUN != nil && *req.LUN > 16383 {
		return &config.FieldError{Field: "lun", Msg: fmt.Sprintf("%d is out of range 0..16383", *req.LUN)}
	}
	if err := h.b.Clone(r.Context(), name, n, req); err != nil {
		return err
	}
	if req.LUN != nil {
		l, err := h.lunView(req.Target, *req.LUN)
		if err != nil {
			return err
		}
		return reply(w, http.StatusCreated, l)
	}
	return reply(w, http.StatusCreated, map[string]string{"volume": req.Volume, "origin": fmt.Sprintf("%s/%d@%s", name, n, req.Snapshot)})
}

// ACL and CHAP.

func (h *handler) getACL(w http.ResponseWriter, r *http.Request) error {
	name, err := targetParam(r)
	if err != nil {
		return err
	}
	t, err := h.view(name)
	if err != nil {
		return err
	}
	return ok(w, t.ACL)
}

// changeACL applies fn to the target's ACL (created when missing; dropped
// when it ends up empty) and answers with the result.
func (h *handler) changeACL(w http.ResponseWriter, r *http.Request, what string, fn func(a *config.ACL) error) error {
	name, err := targetParam(r)
	if err != nil {
		return err
	}
	var prefix string
	err = h.b.Change(r.Context(), what+" on "+name, func(c *config.Config) error {
		i, err := findTarget(c, name)
		if err != nil {
			return err
		}
		prefix = fmt.Sprintf("targets[%d].acl", i)
		a := c.Targets[i].ACL
		if a == nil {
			a = &config.ACL{}
		}
		if err := fn(a); err != nil {
			return err
		}
		if len(a.Initiators) == 0 && len(a.Networks) == 0 {
			a = nil
		}
		c.Targets[i].ACL = a
		return nil
	})
	if err != nil {
		return relative(err, prefix)
	}
	t, err := h.view(name)
	if err != nil {
		return err
	}
	return ok(w, t.ACL)
}

func (h *handler) putACL(w http.ResponseWriter, r *http.Request) error {
	var acl config.ACL
	if err := readBody(w, r, &acl); err != nil {
		return err
	}
	return h.changeACL(w, r, "set ACL", func(a *config.ACL) error {
		*a = acl
		return nil
	})
}

func (h *handler) addInitiator(w http.ResponseWriter, r *http.Request) error {
	var req InitiatorRequest
	if err := readBody(w, r, &req); err != nil {
		return err
	}
	if !config.ValidISCSIName(req.Initiator) {
		return &config.FieldError{Field: "initiator", Msg: fmt.Sprintf("%q is not a valid iSCSI name", req.Initiator)}
	}
	return h.changeACL(w, r, "allow initiator "+req.Initiator, func(a *config.ACL) error {
		if slices.ContainsFunc(a.Initiators, func(s string) bool { return strings.EqualFold(s, req.Initiator) }) {
			return &Error{Field: "initiator", Err: fmt.Errorf("%w: %s is already allowed", ErrExists, req.Initiator)}
		}
		a.Initiators = append(a.Initiators, req.Initiator)
		return nil
	})
}

func (h *handler) removeInitiator(w http.ResponseWriter, r *http.Request) error {
	ini := r.PathValue("initiator")
	if !config.ValidISCSIName(ini) {
		return &Error{Field: "initiator", Err: fmt.Errorf("%w: %q is not a valid iSCSI name", ErrInvalid, ini)}
	}
	return h.changeACL(w, r, "disallow initiator "+ini, func(a *config.ACL) error {
		i := slices.IndexFunc(a.Initiators, func(s string) bool { return strings.EqualFold(s, ini) })
		if i < 0 {
			return &Error{Field: "initiator", Err: fmt.Errorf("%w: %s is not in the ACL", ErrNotFound, ini)}
		}
		a.Initiators = slices.Delete(a.Initiators, i, i+1)
		return nil
	})
}

func (h *handler) addNetwork(w http.ResponseWriter, r *http.Request) error {
	var req NetworkRequest
	if err := readBody(w, r, &req); err != nil {
		return err
	}
	if req.Network == "" {
		return &config.FieldError{Field: "network", Msg: "required"}
	}
	return h.changeACL(w, r, "allow network "+req.Network, func(a *config.ACL) error {
		if slices.Contains(a.Networks, req.Network) {
			return &Error{Field: "network", Err: fmt.Errorf("%w: %s is already allowed", ErrExists, req.Network)}
		}
		a.Networks = append(a.Networks, req.Network)
		return nil
	})
}

func (h *handler) removeNetwork(w http.ResponseWriter, r *http.Request) error {
	network := r.URL.Query().Get("network")
	if network == "" {
		return &Error{Field: "network", Err: fmt.Errorf("%w: the network query parameter is required", ErrInvalid)}
	}
	return h.changeACL(w, r, "disallow network "+network, func(a *config.ACL) error {
		i := slices.Index(a.Networks, network)
		if i < 0 {
			return &Error{Field: "network", Err: fmt.Errorf("%w: %s is not in the ACL", ErrNotFound, network)}
		}
		a.Networks = slices.Delete(a.Networks, i, i+1)
		return nil
	})
}

func (h *handler) getCHAP(w http.ResponseWriter, r *http.Request) error {
	name, err := targetParam(r)
	if err != nil {
		return err
	}
	t, err := h.view(name)
	if err != nil {
		return err
	}
	if t.CHAP == nil {
		return &Error{Field: "chap", Err: fmt.Errorf("%w: target %s does not require CHAP", ErrNotFound, name)}
	}
	return ok(w, t.CHAP)
}

func (h *handler) putCHAP(w http.ResponseWriter, r *http.Request) error {
	name, err := targetParam(r)
	if err != nil {
		return err
	}
	var ch config.CHAP
	if err := readBody(w, r, &ch); err != nil {
		return err
	}
	var prefix string
	err = h.b.Change(r.Context(), "set CHAP on "+name, func(c *config.Config) error {
		i, err := findTarget(c, name)
		if err != nil {
			return err
		}
		prefix = fmt.Sprintf("targets[%d].chap", i)
		c.Targets[i].CHAP = &ch
		return nil
	})
	if err != nil {
		return relative(err, prefix)
	}
	return ok(w, CHAPView(&ch))
}

func (h *handler) removeCHAP(w http.ResponseWriter, r *http.Request) error {
	name, err := targetParam(r)
	if err != nil {
		return err
	}
	err = h.b.Change(r.Context(), "remove CHAP from "+name, func(c *config.Config) error {
		i, err := findTarget(c, name)
		if err != nil {
			return err
		}
		if c.Targets[i].CHAP == nil {
			return &Error{Field: "chap", Err: fmt.Errorf("%w: target %s does not require CHAP", ErrNotFound, name)}
		}
		c.Targets[i].CHAP = nil
		return nil
	})
	if err != nil {
		return err
	}
	return reply(w, http.StatusNoContent, nil)
}

// Portal groups.

func (h *handler) portalView(tag uint16) (PortalGroup, error) {
	for _, p := range h.b.PortalGroups() {
		if p.Tag == tag {
			return p, nil
		}
	}
	return PortalGroup{}, &Error{Field: "tag", Err: fmt.Errorf("%w: no portal group %d", ErrNotFound, tag)}
}

func (h *handler) addPortalGroup(w http.ResponseWriter, r *http.Request) error {
	var p config.Portal
	if err := readBody(w, r, &p); err != nil {
		return err
	}
	if p.Tag == 0 {
		return &config.FieldError{Field: "tag", Msg: "required: 1..65535"}
	}
	var prefix string
	err := h.b.Change(r.Context(), fmt.Sprintf("add portal group %d", p.Tag), func(c *config.Config) error {
		if _, err := findPortal(c, p.Tag); err == nil {
			return &Error{Field: "tag", Err: fmt.Errorf("%w: portal group %d", ErrExists, p.Tag)}
		}
		prefix = fmt.Sprintf("portal_groups[%d]", len(c.Portals))
		c.Portals = append(c.Portals, p)
		return nil
	})
	if err != nil {
		return relative(err, prefix)
	}
	v, err := h.portalView(p.Tag)
	if err != nil {
		return err
	}
	return reply(w, http.StatusCreated, v)
}

func (h *handler) getPortalGroup(w http.ResponseWriter, r *http.Request) error {
	tag, err := tagParam(r)
	if err != nil {
		return err
	}
	v, err := h.portalView(tag)
	if err != nil {
		return err
	}
	return ok(w, v)
}

func (h *handler) changePortal(w http.ResponseWriter, r *http.Request, what string, fn func(p *config.Portal) error) error {
	tag, err := tagParam(r)
	if err != nil {
		return err
	}
	var prefix string
	err = h.b.Change(r.Context(), fmt.Sprintf("%s (portal group %d)", what, tag), func(c *config.Config) error {
		i, err := findPortal(c, tag)
		if err != nil {
			return err
		}
		prefix = fmt.Sprintf("portal_groups[%d]", i)
		return fn(&c.Portals[i])
	})
	if err != nil {
		return relative(err, prefix)
	}
	v, err := h.portalView(tag)
	if err != nil {
		return err
	}
	return ok(w, v)
}

func (h *handler) patchPortalGroup(w http.ResponseWriter, r *http.Request) error {
	var p PortalGroupPatch
	if err := readBody(w, r, &p); err != nil {
		return err
	}
	if p.ALUAState == "" {
		return &config.FieldError{Field: "alua_state", Msg: "required"}
	}
	return h.changePortal(w, r, "set ALUA state "+p.ALUAState, func(pg *config.Portal) error {
		pg.ALUAState = p.ALUAState
		return nil
	})
}

func (h *handler) removePortalGroup(w http.ResponseWriter, r *http.Request) error {
	tag, err := tagParam(r)
	if err != nil {
		return err
	}
	err = h.b.Change(r.Context(), fmt.Sprintf("remove portal group %d", tag), func(c *config.Config) error {
		i, err := findPortal(c, tag)
		if err != nil {
			return err
		}
		for _, t := range c.Targets {
			if slices.Contains(t.PortalGroups, tag) {
				return &Error{Field: "tag", Err: fmt.Errorf("%w: target %s uses portal group %d; change its portal_groups first", ErrInUse, t.Name, tag)}
			}
		}
		c.Portals = slices.Delete(c.Portals, i, i+1)
		return nil
	})
	if err != nil {
		return err
	}
	return reply(w, http.StatusNoContent, nil)
}

func (h *handler) addListen(w http.ResponseWriter, r *http.Request) error {
	var req ListenRequest
	if err := readBody(w, r, &req); err != nil {
		return err
	}
	if req.Address == "" {
		return &config.FieldError{Field: "address", Msg: "required (host:port)"}
	}
	return h.changePortal(w, r, "listen on "+req.Address, func(p *config.Portal) error {
		if slices.Contains(p.Listen, req.Address) {
			return &Error{Field: "address", Err: fmt.Errorf("%w: portal group %d already listens on %s", ErrExists, p.Tag, req.Address)}
		}
		p.Listen = append(p.Listen, req.Address)
		return nil
	})
}

func (h *handler) removeListen(w http.ResponseWriter, r *http.Request) error {
	addr := r.PathValue("address")
	return h.changePortal(w, r, "stop listening on "+addr, func(p *config.Portal) error {
		i := slices.Index(p.Listen, addr)
		if i < 0 {
			return &Error{Field: "address", Err: fmt.Errorf("%w: portal group %d does not listen on %q", ErrNotFound, p.Tag, addr)}
		}
		p.Listen = slices.Delete(p.Listen, i, i+1)
		return nil
	})
}

// Sessions.

func (h *handler) dropSession(w http.ResponseWriter, r *http.Request) error {
	s := r.PathValue("id")
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return &Error{Field: "id", Err: fmt.Errorf("%w: %q is not a session id", ErrInvalid, s)}
	}
	if err := h.b.DropSession(r.Context(), id); err != nil {
		return err
	}
	return reply(w, http.StatusNoContent, nil)
}
