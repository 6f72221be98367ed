package iscsi

import "errors"

// Errors returned by the Server.
var (
	// ErrServerClosed is returned by Serve after Shutdown or Close.
	ErrServerClosed = errors.New("iscsi: server closed")
	// ErrTargetExists: AddTarget with a name already in use.
	ErrTargetExists = errors.New("iscsi: target already exists")
	// ErrNoSuchTarget: the named target is not configured.
	ErrNoSuchTarget = errors.New("iscsi: no such target")
	// ErrNoSuchSession: CloseSession with an unknown id.
	ErrNoSuchSession = errors.New("iscsi: no such session")
	// ErrInvalidOptions: Options or TargetConfig failed validation.
	ErrInvalidOptions = errors.New("iscsi: invalid options")
	// ErrInvalidName: an iSCSI name is not of the iqn./eui./naa. forms.
	ErrInvalidName = errors.New("iscsi: invalid iSCSI name")
)

// Internal connection-ending causes (logged, never returned to callers).
var (
	errProtocol     = errors.New("iscsi: protocol error")
	errNopTimeout   = errors.New("iscsi: initiator did not answer NOP-In")
	errSessionEnded = errors.New("iscsi: session ended")
	errLogout       = errors.New("iscsi: logged out")
)
