package iscsitest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/mem"
	"github.com/lunway/lunway/target/iscsi"
	"github.com/lunway/lunway/target/scsi"
)

// DefaultTarget is the target name Start uses by default.
const DefaultTarget = "iqn.2026-01.io.lunway:test"

// Options configure Start. Zero fields take the defaults in brackets.
type Options struct {
	// Server options; Logger defaults to a test logger at LUNWAY_TEST_LOG
	// level (errors only when unset).
	Server iscsi.Options
	// TargetName [DefaultTarget].
	TargetName string
	// LUNs is the number of logical units [1].
	LUNs int
	// SizeBytes of each LU [64 MiB].
	SizeBytes int64
	// BlockSize is the logical block size [512].
	BlockSize int
	// Wrap, when set, wraps each LU's device (fault injection).
	Wrap func(lun int, d blockdev.Device) blockdev.Device
	// Target, when set, edits the target configuration before AddTarget.
	Target func(*iscsi.TargetConfig)
}

// Server is a running test server.
type Server struct {
	*iscsi.Server
	// Addr is the listening address (127.0.0.1:port).
	Addr string
	// TargetName is the test target's name.
	TargetName string
	// SCSI is the test target's SCSI device server.
	SCSI *scsi.Target
	// Devices are the LUs' in-memory devices, by LUN.
	Devices []*mem.Device

	serveErr chan error
}

// Start starts a Server on 127.0.0.1:0. It is stopped (Close) in t.Cleanup
// and Serve's error is checked there.
func Start(t testing.TB, opts *Options) *Server {
	t.Helper()
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.TargetName == "" {
		o.TargetName = DefaultTarget
	}
	if o.LUNs == 0 {
		o.LUNs = 1
	}
	if o.SizeBytes == 0 {
		o.SizeBytes = 64 << 20
	}
	if o.BlockSize == 0 {
		o.BlockSize = 512
	}
	if o.Server.Logger == nil {
		o.Server.Logger = Logger(t)
	}
	srv, err := iscsi.NewServer(&o.Server)
	if err != nil {
		t.Fatalf("iscsitest: NewServer: %v", err)
	}
	st := scsi.NewTarget(o.TargetName, &scsi.TargetOptions{Logger: o.Server.Logger})
	s := &Server{Server: srv, TargetName: o.TargetName, SCSI: st, serveErr: make(chan error, 1)}
	for lun := 0; lun < o.LUNs; lun++ {
		d, err := mem.New(o.SizeBytes, &mem.Options{LogicalBlockSize: o.BlockSize, PhysicalBlockSize: max(4096, o.BlockSize)})
		if err != nil {
			t.Fatalf("iscsitest: mem.New: %v", err)
		}
		s.Devices = append(s.Devices, d)
		var dev blockdev.Device = d
		if o.Wrap != nil {
			dev = o.Wrap(lun, d)
		}
		lu, err := scsi.NewLU(scsi.LUOptions{Device: dev, SerialNumber: fmt.Sprintf("LUNWAYTEST%04d", lun)})
		if err != nil {
			t.Fatalf("iscsitest: NewLU: %v", err)
		}
		if err := st.AddLU(uint64(lun), lu); err != nil {
			t.Fatalf("iscsitest: AddLU: %v", err)
		}
	}
	cfg := iscsi.TargetConfig{Name: o.TargetName, SCSI: st}
	if o.Target != nil {
		o.Target(&cfg)
	}
	if err := srv.AddTarget(cfg); err != nil {
		t.Fatalf("iscsitest: AddTarget: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("iscsitest: listen: %v", err)
	}
	s.Addr = ln.Addr().String()
	go func() { s.serveErr <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		select {
		case err := <-s.serveErr:
			if !errors.Is(err, iscsi.ErrServerClosed) {
				t.Errorf("iscsitest: Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("iscsitest: Serve did not return after Close")
		}
	})
	return s
}

// URL returns the libiscsi URL of a LUN: iscsi://127.0.0.1:port/iqn/lun.
func (s *Server) URL(lun int) string {
	return fmt.Sprintf("iscsi://%s/%s/%d", s.Addr, s.TargetName, lun)
}

// Shutdown runs Server.Shutdown with a timeout.
func (s *Server) Shutdown(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.Server.Shutdown(ctx)
}

// Logger returns a logger writing to t.Log at the level named by
// LUNWAY_TEST_LOG (debug, info, warn; errors only by default).
func Logger(t testing.TB) *slog.Logger {
	lvl := slog.LevelError
	switch os.Getenv("LUNWAY_TEST_LOG") {
	case "debug":
		lvl = slog.LevelDebug
	case "info":
		lvl = slog.LevelInfo
	case "warn":
		lvl = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: lvl}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}
