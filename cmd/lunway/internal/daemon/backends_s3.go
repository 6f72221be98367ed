package daemon

import (
	"context"
	"errors"
	"log/slog"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
)

// openS3 opens an S3 store. TODO(issue 5): backend/s3.
func openS3(ctx context.Context, c *config.S3, log *slog.Logger) (backend.Store, error) {
	return nil, errors.New("s3 stores are not available in this build yet")
}
