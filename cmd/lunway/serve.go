package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"github.com/lunway/lunway/cmd/lunway/internal/daemon"
	"github.com/spf13/cobra"
)

type serveFlags struct {
	config  string
	listen  string
	dataDir string
}

func newServeCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the iSCSI target daemon",
		Long: `Run the iSCSI target daemon.

Without --config, the daemon serves DATA_DIR/lunway.yaml when it exists (the
management API saves live changes there), and otherwise the embedded default:
target ` + config.DefaultTargetName + `, LUN 0, a 1 GiB thin file
DATA_DIR/lun0.img, on ` + config.DefaultListen + `.

--listen replaces the addresses of the first portal group and --data-dir the
data_dir of the configuration. SIGINT or SIGTERM shut down cleanly: in-flight
commands finish, sessions are logged out and every LUN is flushed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runServe(cmd, &f) },
	}
	cmd.Flags().StringVar(&f.config, "config", "", "configuration file (YAML, see docs/CONFIG.md)")
	cmd.Flags().StringVar(&f.listen, "listen", "", "portal address host:port (default "+config.DefaultListen+")")
	cmd.Flags().StringVar(&f.dataDir, "data-dir", "", "data directory (default "+config.DefaultDataDir+")")
	return cmd
}

// loadServeConfig resolves the configuration and the path live changes are
// saved to.
func loadServeConfig(f *serveFlags) (*config.Config, string, error) {
	var cfg *config.Config
	path := f.config
	if path == "" {
		dd := f.dataDir
		if dd == "" {
			dd = config.DefaultDataDir
		}
		path = filepath.Join(dd, "lunway.yaml")
		if _, err := os.Stat(path); err != nil {
			cfg = config.Default(f.listen, dd)
		}
	}
	if cfg == nil {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, "", usageError{err}
		}
		if cfg, err = config.Parse(data); err != nil {
			return nil, "", usageError{fmt.Errorf("%s: %w", path, err)}
		}
	}
	if f.dataDir != "" {
		cfg.DataDir = f.dataDir
	}
	cfg.ApplyDefaults()
	if f.listen != "" {
		cfg.Portals[0].Listen = []string{f.listen}
	}
	if err := cfg.Validate(); err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return cfg, path, nil
}

func runServe(cmd *cobra.Command, f *serveFlags) error {
	cfg, path, err := loadServeConfig(f)
	if err != nil {
		return err
	}
	log, audit, sync, err := newLogger(cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return usageError{err}
	}
	defer sync()
	d, err := daemon.New(daemon.Options{Config: cfg, ConfigPath: path, Logger: log, AuditLogger: audit, Version: lunwayVersion()})
	if err != nil {
		return err
	}
	if err := d.Start(); err != nil {
		return err
	}
	audit.Info("lunway serving", "version", lunwayVersion(), "config", path, "data_dir", cfg.DataDir)

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var runErr error
	select {
	case s := <-sigs:
		audit.Info("shutting down", "signal", s.String())
	case runErr = <-d.Err():
		log.Error("serving failed; shutting down", "err", runErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ISCSI.ShutdownTimeout.D(30*time.Second))
	defer cancel()
	go func() {
		select {
		case s := <-sigs:
			log.Warn("second signal: not waiting for in-flight commands", "signal", s.String())
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := d.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("shutdown", "err", err)
		if runErr == nil {
			runErr = err
		}
	}
	audit.Info("stopped")
	return runErr
}
