package iscsi

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/lunway/lunway/target/initiator"
)

// Defaults of Options.
const (
	DefaultInitiatorName     = "iqn.2026-11.dev.lunway:blockdev"
	DefaultMaxTransferBytes  = 8 << 20
	DefaultCommandTimeout    = 60 * time.Second
	DefaultBusyTimeout       = 60 * time.Second
	DefaultReconnectAttempts = 5
	DefaultReconnectBackoff  = 250 * time.Millisecond
	DefaultMaxParallel       = 8
	// maxReconnectBackoff caps the doubling backoff between attempts.
	maxReconnectBackoff = 5 * time.Second
	// maxCommandReconnects bounds how often one command is retried on a
	// new connection: a target that drops the connection on every try of
	// a command does not make the Device loop forever.
	maxCommandReconnects = 3
	// maxTransientRetries bounds immediate retries of ABORTED COMMAND and
	// TASK ABORTED.
	maxTransientRetries = 3
)

// Options configure Open. The zero value (or nil) means defaults.
type Options struct {
	// Initiator is the base of the login options: Open sets TargetName,
	// a fixed ISID (so that a reconnect reinstates the session) and, when
	// Initiator.CHAP is nil and the Target has a User, one-way CHAP.
	// Its InitiatorName defaults to DefaultInitiatorName.
	Initiator initiator.Options
	// ReadOnly refuses writes locally (blockdev.ErrReadOnly), whatever
	// the target allows. A target that reports write protection makes the
	// Device read-only too.
	ReadOnly bool
	// MaxTransferBytes caps one READ or WRITE command; larger requests are
	// split (and the pieces sent in parallel). The target's MAXIMUM
	// TRANSFER LENGTH, when lower, wins.
	MaxTransferBytes int
	// MaxParallel bounds the commands one split request has in flight.
	MaxParallel int
	// CommandTimeout bounds one command. A command that does not complete
	// in time is taken as a dead connection: the connection is dropped
	// and the command retried on a new one (ErrorRecoveryLevel 0 has no
	// finer recovery).
	CommandTimeout time.Duration
	// BusyTimeout bounds how long BUSY, TASK SET FULL and NOT READY
	// (becoming ready) are retried, with a doubling backoff from 10 ms to
	// 1 s, before the command fails with blockdev.ErrUnavailable.
	BusyTimeout time.Duration
	// ReconnectAttempts bounds the logins tried after a connection loss,
	// ReconnectBackoff (doubling, up to 5 s) apart. When they all fail
	// the I/O fails with blockdev.ErrUnavailable; the next I/O tries
	// again. Negative disables reconnecting.
	ReconnectAttempts int
	ReconnectBackoff  time.Duration
	// Logger receives reconnects and retries; nil discards them.
	Logger *slog.Logger
}

// withDefaults returns a copy with zero fields set to defaults.
func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.Initiator.InitiatorName == "" {
		r.Initiator.InitiatorName = DefaultInitiatorName
	}
	if r.MaxTransferBytes == 0 {
		r.MaxTransferBytes = DefaultMaxTransferBytes
	}
	if r.MaxParallel == 0 {
		r.MaxParallel = DefaultMaxParallel
	}
	if r.CommandTimeout == 0 {
		r.CommandTimeout = DefaultCommandTimeout
	}
	if r.BusyTimeout == 0 {
		r.BusyTimeout = DefaultBusyTimeout
	}
	if r.ReconnectAttempts == 0 {
		r.ReconnectAttempts = DefaultReconnectAttempts
	}
	if r.ReconnectAttempts < 0 {
		r.ReconnectAttempts = 0
	}
	if r.ReconnectBackoff == 0 {
		r.ReconnectBackoff = DefaultReconnectBackoff
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r
}

// Validate reports whether the options are usable.
func (o *Options) Validate() error {
	if o.MaxTransferBytes < 0 || o.MaxTransferBytes > 1<<30 {
		return fmt.Errorf("iscsi: MaxTransferBytes %d: must be 0..1 GiB", o.MaxTransferBytes)
	}
	if o.MaxParallel < 0 || o.MaxParallel > 256 {
		return fmt.Errorf("iscsi: MaxParallel %d: must be 0..256", o.MaxParallel)
	}
	if o.CommandTimeout < 0 || o.BusyTimeout < 0 || o.ReconnectBackoff < 0 {
		return fmt.Errorf("iscsi: negative timeout or backoff")
	}
	return nil
}
