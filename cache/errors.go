package cache

import (
	"errors"
	"fmt"

	"github.com/lunway/lunway/backend"
)

var (
	// ErrLogFull: the write-back log stayed full (the store is not taking
	// uploads) for Options.FullWait. The error also wraps
	// backend.ErrUnavailable: the write may be retried later.
	ErrLogFull = errors.New("cache: write-back log full")
	// ErrLogBroken: writing or syncing the local log failed; the Cache
	// refuses writes from then on (reads still work). Reopen after fixing
	// the disk.
	ErrLogBroken = errors.New("cache: local log failed")

	// errTruncated: a record ends before its announced length (the torn
	// tail of the log after a crash).
	errTruncated = fmt.Errorf("cache: truncated record: %w", backend.ErrCorrupt)
	// errBadRecord: a record fails validation.
	errBadRecord = fmt.Errorf("cache: bad record: %w", backend.ErrCorrupt)
	// errSeqGap: valid records out of sequence (damage, never a torn tail).
	errSeqGap = fmt.Errorf("cache: records out of sequence: %w", backend.ErrCorrupt)
)
