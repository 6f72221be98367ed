//go:build !ceph

package daemon

import (
	"context"
	"log/slog"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
)

const noCeph = "this lunway was built without Ceph support; rebuild with `go build -tags ceph,pacific` (needs librados-dev and librbd-dev)"

func openRBD(ctx context.Context, cfg *config.Config, lc config.LUN, field string, log *slog.Logger) (*openedBackend, error) {
	return nil, &config.FieldError{Field: field + ".type", Msg: noCeph}
}

func openRADOS(ctx context.Context, c *config.Ceph, log *slog.Logger) (backend.Store, error) {
	return nil, &config.FieldError{Field: "type", Msg: noCeph}
}
