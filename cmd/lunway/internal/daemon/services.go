package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/lunway/lunway/cmd/lunway/internal/api"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"github.com/lunway/lunway/cmd/lunway/internal/metrics"
)

// listenServices binds the management API (Unix socket, optional TCP
// with TLS and a bearer token) and the metrics endpoint; they serve from
// commit on. Services are configured at start only.
func (d *Daemon) listenServices(x *txn, cfg *config.Config) error {
	d.started = time.Now()
	errLog := slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)
	newServer := func(h http.Handler) *http.Server {
		return &http.Server{Handler: h, ConnContext: api.ConnContext, ErrorLog: errLog,
			ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
			WriteTimeout: changeTimeout + time.Minute, IdleTimeout: 2 * time.Minute}
	}
	h := api.Handler(d, d.log)
	if cfg.API.Socket != "off" {
		path := cfg.ResolvePath(cfg.API.Socket)
		ln, err := api.ListenUnix(path)
		if err != nil {
			return &config.FieldError{Field: "api.socket", Msg: err.Error()}
		}
		d.serveHTTP(x, newServer(h), ln, "api")
		d.services.apiAddrs = append(d.services.apiAddrs, "unix:"+path)
	}
	if cfg.API.Listen != "" {
		tok, err := api.LoadToken(cfg.ResolvePath(cfg.API.TokenFile))
		if err != nil {
			return &config.FieldError{Field: "api.token_file", Msg: err.Error()}
		}
		ln, err := api.ListenTLS(cfg.API.Listen, cfg.ResolvePath(cfg.API.TLSCert), cfg.ResolvePath(cfg.API.TLSKey))
		if err != nil {
			return &config.FieldError{Field: "api.listen", Msg: err.Error()}
		}
		d.serveHTTP(x, newServer(api.RequireToken(tok, h)), ln, "api")
		d.services.apiAddrs = append(d.services.apiAddrs, "https://"+ln.Addr().String())
	}
	if cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return &config.FieldError{Field: "metrics.listen", Msg: err.Error()}
		}
		srv := newServer(metrics.Handler(metrics.NewRegistry(d), cfg.Metrics.Pprof, d.log))
		srv.ConnContext = nil
		d.serveHTTP(x, srv, ln, "metrics")
		d.services.metricsAddr = "http://" + ln.Addr().String() + "/metrics"
	}
	return nil
}

// serveHTTP serves srv on ln from commit on; before that, rollback
// closes ln.
func (d *Daemon) serveHTTP(x *txn, srv *http.Server, ln net.Listener, what string) {
	x.onUndo(func() { ln.Close() })
	x.onCommit(func() {
		if what == "metrics" {
			d.services.metrics = append(d.services.metrics, srv)
		} else {
			d.services.api = append(d.services.api, srv)
		}
		d.svcWG.Add(1)
		go func() {
			defer d.svcWG.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.serveError(fmt.Errorf("%s on %s: %w", what, ln.Addr(), err))
			}
		}()
		d.audit.Info("serving "+what, "addr", ln.Addr().String())
	})
}
