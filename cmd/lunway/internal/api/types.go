package api

import (
	"context"
	"time"

	"github.com/lunway/lunway/cmd/lunway/internal/config"
)

// Prefix is the path prefix of this version of the API.
const Prefix = "/v1"

// Backend is what the Handler serves: the daemon. Every method may be
// called concurrently. Reads return consistent snapshots; changes are
// serialized by the Backend.
type Backend interface {
	Status() Status
	// Config returns the current configuration. The caller must not
	// modify it.
	Config() *config.Config
	Targets() []Target
	PortalGroups() []PortalGroup
	Sessions() []Session
	Health() Health

	// Change applies mutate to a copy of the configuration, validates the
	// whole result, applies the difference live and saves the file. When
	// any step fails, the live state and the file are left as they were
	// and the error says why (a *config.FieldError for invalid
	// configurations, or an error wrapping a sentinel of this package).
	// what describes the change for the log.
	Change(ctx context.Context, what string, mutate func(c *config.Config) error) error
	// Resize changes a LUN's capacity live and saves the new size.
	// Shrinking needs allowShrink.
	Resize(ctx context.Context, target string, lun uint64, sizeBytes int64, allowShrink bool) error
	// DropSession ends a session, aborting its commands.
	DropSession(ctx context.Context, id uint64) error
	// Snapshots lists the snapshots of a blockmap LUN.
	Snapshots(ctx context.Context, target string, lun uint64) ([]Snapshot, error)
	Snapshot(ctx context.Context, target string, lun uint64, name string) error
	DeleteSnapshot(ctx context.Context, target string, lun uint64, name string) error
	// Clone creates a volume from a snapshot of a blockmap LUN, in the
	// same store, and serves it as a new LUN when req names one.
	Clone(ctx context.Context, target string, lun uint64, req CloneRequest) error
}

// Status is the daemon's overall state (GET /v1/status).
type Status struct {
	Version    string    `json:"version"`
	PID        int       `json:"pid"`
	Started    time.Time `json:"started"`
	ConfigPath string    `json:"config_path,omitempty"`
	DataDir    string    `json:"data_dir"`
	// Health is the worst health of any LUN: ok, degraded, unavailable.
	Health   string `json:"health"`
	Targets  int    `json:"targets"`
	LUNs     int    `json:"luns"`
	Sessions int    `json:"sessions"`
	// Portals are the bound iSCSI addresses, as "host:port,tpgt".
	Portals []string `json:"portals"`
	// API lists the API endpoints (socket path, TCP address).
	API     []string `json:"api"`
	Metrics string   `json:"metrics,omitempty"`
	// ConfigChanges and ConfigChangesFailed count API changes since start.
	ConfigChanges       uint64 `json:"config_changes"`
	ConfigChangesFailed uint64 `json:"config_changes_failed"`
}

// Target is a target with its LUNs (GET /v1/targets).
type Target struct {
	Name         string   `json:"name"`
	Alias        string   `json:"alias,omitempty"`
	PortalGroups []uint16 `json:"portal_groups"`
	ACL          ACL      `json:"acl"`
	CHAP         *CHAP    `json:"chap,omitempty"`
	LUNs         []LUN    `json:"luns"`
	Sessions     int      `json:"sessions"`
}

// ACL is a target's access list; empty lists allow everyone.
type ACL struct {
	Initiators []string `json:"initiators" yaml:"initiators,omitempty"`
	Networks   []string `json:"networks" yaml:"networks,omitempty"`
}

// Redacted stands for a secret in answers.
const Redacted = "(redacted)"

// CHAP is a target's CHAP setting with the secrets redacted.
type CHAP struct {
	User             string `json:"user"`
	Secret           string `json:"secret,omitempty"`
	SecretFile       string `json:"secret_file,omitempty"`
	MutualUser       string `json:"mutual_user,omitempty"`
	MutualSecret     string `json:"mutual_secret,omitempty"`
	MutualSecretFile string `json:"mutual_secret_file,omitempty"`
}

// LUN is a logical unit with its live state.
type LUN struct {
	Target    string `json:"target"`
	LUN       uint64 `json:"lun"`
	SizeBytes int64  `json:"size_bytes"`
	ReadOnly  bool   `json:"read_only,omitempty"`
	// Backend is the backend section of the configuration, in its JSON
	// form (secrets redacted).
	Backend     map[string]any `json:"backend"`
	BackendType string         `json:"backend_type"`
	Serial      string         `json:"serial"`
	NAA         string         `json:"naa"`
	// Health: ok, degraded or unavailable.
	Health string `json:"health"`
	// Pending is set while the backend could not be opened yet and the
	// LUN answers BUSY.
	Pending bool `json:"pending,omitempty"`
	// InFlight is the number of commands executing on the LUN now.
	InFlight int64 `json:"in_flight"`
}

// PortalGroup is a target portal group.
type PortalGroup struct {
	Tag uint16 `json:"tag"`
	// Listen are the configured addresses, Addrs the bound ones.
	Listen    []string `json:"listen"`
	Addrs     []string `json:"addrs"`
	ALUAState string   `json:"alua_state"`
	Sessions  int      `json:"sessions"`
}

// Session is an iSCSI session (one connection).
type Session struct {
	ID           uint64    `json:"id"`
	Initiator    string    `json:"initiator"`
	ISID         string    `json:"isid"`
	TSIH         uint16    `json:"tsih"`
	Target       string    `json:"target,omitempty"`
	Discovery    bool      `json:"discovery,omitempty"`
	PortalGroup  uint16    `json:"portal_group"`
	Remote       string    `json:"remote"`
	Local        string    `json:"local"`
	Started      time.Time `json:"started"`
	InFlight     int       `json:"in_flight"`
	HeaderDigest bool      `json:"header_digest"`
	DataDigest   bool      `json:"data_digest"`
}

// Health is the health report (GET /v1/health).
type Health struct {
	// Status is the worst of the LUNs' health: ok, degraded, unavailable.
	Status   string          `json:"status"`
	LUNs     []LUNHealth     `json:"luns"`
	Backends []BackendHealth `json:"backends"`
}

// LUNHealth is one LUN's health.
type LUNHealth struct {
	Target  string `json:"target"`
	LUN     uint64 `json:"lun"`
	Health  string `json:"health"`
	Backend string `json:"backend"`
	Reason  string `json:"reason,omitempty"`
}

// BackendHealth is the health of one backend (a file, an RBD image, or
// the object store under blockmap volumes): the backend's own report when
// it has one, otherwise the worst of its LUNs.
type BackendHealth struct {
	Name   string   `json:"name"`
	Type   string   `json:"type"`
	Health string   `json:"health"`
	LUNs   []string `json:"luns"` // "target/lun"
}

// Snapshot describes a snapshot of a blockmap LUN.
type Snapshot struct {
	Name       string    `json:"name"`
	Created    time.Time `json:"created"`
	SizeBytes  int64     `json:"size_bytes"`
	Generation uint64    `json:"generation"`
}

// Error is the body of every 4xx and 5xx answer.
type ErrorBody struct {
	Error string `json:"error"`
	// Field names the request or configuration field at fault.
	Field string `json:"field,omitempty"`
}

// Requests. Fields carry yaml tags (the names the strict decoder accepts)
// and the same json names (what the Client sends).

// ResizeRequest is the body of POST .../luns/{lun}/resize.
type ResizeRequest struct {
	Size config.Size `yaml:"size" json:"size"`
	// AllowShrink permits a smaller size (data beyond the end is lost for
	// file LUNs; refused for blockmap volumes while mapped).
	AllowShrink bool `yaml:"allow_shrink,omitempty" json:"allow_shrink,omitempty"`
}

// SnapshotRequest is the body of POST .../snapshots.
type SnapshotRequest struct {
	Name string `yaml:"name" json:"name"`
}

// CloneRequest is the body of POST .../clone: a new volume from a
// snapshot, optionally served as LUN Lun of Target right away.
type CloneRequest struct {
	Snapshot string  `yaml:"snapshot" json:"snapshot"`
	Volume   string  `yaml:"volume" json:"volume"`
	Target   string  `yaml:"target,omitempty" json:"target,omitempty"`
	LUN      *uint64 `yaml:"lun,omitempty" json:"lun,omitempty"`
}

// TargetPatch is the body of PATCH /v1/targets/{target}; absent fields
// stay as they are.
type TargetPatch struct {
	Alias        *string   `yaml:"alias,omitempty" json:"alias,omitempty"`
	PortalGroups *[]uint16 `yaml:"portal_groups,omitempty" json:"portal_groups,omitempty"`
}

// PortalGroupPatch is the body of PATCH /v1/portal-groups/{tag}.
type PortalGroupPatch struct {
	ALUAState string `yaml:"alua_state" json:"alua_state"`
}

// ListenRequest is the body of POST /v1/portal-groups/{tag}/listen.
type ListenRequest struct {
	Address string `yaml:"address" json:"address"`
}

// InitiatorRequest is the body of POST .../acl/initiators.
type InitiatorRequest struct {
	Initiator string `yaml:"initiator" json:"initiator"`
}

// NetworkRequest is the body of POST .../acl/networks.
type NetworkRequest struct {
	Network string `yaml:"network" json:"network"`
}
