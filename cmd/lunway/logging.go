package main

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"go.uber.org/zap/zapcore"
)

// Sampling of repeated log messages: per second, the first
// sampleFirst of each message (and level) are logged, then every
// sampleThereafter-th.
const (
	sampleFirst      = 10
	sampleThereafter = 100
)

// newLogger builds the daemon's loggers on stderr: zap (console or JSON)
// behind log/slog, which every package takes. See newLoggerTo.
func newLogger(level, format string) (log, audit *slog.Logger, sync func(), err error) {
	return newLoggerTo(zapcore.Lock(os.Stderr), level, format)
}

// newLoggerTo builds the daemon's two loggers writing to w. log is
// rate-limited by zap's sampler (storms of the same message, such as
// refused logins or a backend retrying, cannot flood the journal). audit
// has the same format and level but is never sampled: the daemon writes
// one line per change and lifecycle event to it (LUN ready, configuration
// changed, session dropped), the record of what operators did.
func newLoggerTo(w zapcore.WriteSyncer, level, format string) (log, audit *slog.Logger, sync func(), err error) {
	var lvl zapcore.Level
	if err := lvl.Set(level); err != nil {
		return nil, nil, nil, fmt.Errorf("log level %q: %w", level, err)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	encCfg.EncodeDuration = zapcore.StringDurationEncoder
	var enc zapcore.Encoder
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	case "console", "":
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return nil, nil, nil, fmt.Errorf("log format %q: not console or json", format)
	}
	core := zapcore.NewCore(enc, w, lvl)
	sampled := zapcore.NewSamplerWithOptions(core, time.Second, sampleFirst, sampleThereafter)
	log = slog.New(zapslog.NewHandler(sampled, zapslog.WithName("lunway")))
	audit = slog.New(zapslog.NewHandler(core, zapslog.WithName("lunway")))
	return log, audit, func() { _ = w.Sync() }, nil
}
