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

// newLogger builds the daemon's logger: zap (console or JSON) behind
// log/slog, which every package takes. Repeated messages are rate-limited
// by zap's sampler: per second, the first 10 of each message are logged,
// then every 100th.
func newLogger(level, format string) (*slog.Logger, func(), error) {
	var lvl zapcore.Level
	if err := lvl.Set(level); err != nil {
		return nil, nil, fmt.Errorf("log level %q: %w", level, err)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	case "console", "":
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return nil, nil, fmt.Errorf("log format %q: not console or json", format)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(os.Stderr), lvl)
	core = zapcore.NewSamplerWithOptions(core, time.Second, 10, 100)
	z := zap.New(core)
	h := zapslog.NewHandler(core, zapslog.WithName("lunway"))
	return slog.New(h), func() { _ = z.Sync() }, nil
}
