// Package config is the daemon's configuration: the YAML schema documented
// in docs/CONFIG.md, its defaults, its validation (every error names the
// field, as "targets[0].luns[1].size"), and atomic saving.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults of the embedded configuration (`lunway serve` with no arguments).
const (
	DefaultTargetName = "iqn.2026-11.dev.lunway:default"
	DefaultListen     = "127.0.0.1:3260"
	DefaultDataDir    = "./lunway-data"
	DefaultLUNSize    = Size(1 << 30)
	DefaultLUNFile    = "lun0.img"
)

// Config is the whole daemon configuration.
type Config struct {
	// DataDir holds relative backing files, volume stores and state.
	DataDir string   `yaml:"data_dir,omitempty"`
	Log     Log      `yaml:"log,omitempty"`
	ISCSI   ISCSI    `yaml:"iscsi,omitempty"`
	API     API      `yaml:"api,omitempty"`
	Metrics Metrics  `yaml:"metrics,omitempty"`
	Portals []Portal `yaml:"portal_groups,omitempty"`
	// Discovery configures discovery (SendTargets) sessions.
	Discovery Discovery `yaml:"discovery,omitempty"`
	Targets   []Target  `yaml:"targets,omitempty"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level,omitempty"`  // debug, info, warn, error
	Format string `yaml:"format,omitempty"` // console, json
}

// ISCSI holds session parameters the target offers and enforces. Zero
// values mean the defaults documented in docs/CONFIG.md.
type ISCSI struct {
	QueueDepth               int      `yaml:"queue_depth,omitempty"`
	MaxRecvDataSegmentLength Size     `yaml:"max_recv_data_segment_length,omitempty"`
	MaxBurstLength           Size     `yaml:"max_burst_length,omitempty"`
	FirstBurstLength         Size     `yaml:"first_burst_length,omitempty"`
	MaxTransferLength        Size     `yaml:"max_transfer_length,omitempty"`
	ImmediateData            *bool    `yaml:"immediate_data,omitempty"`
	InitialR2T               bool     `yaml:"initial_r2t,omitempty"`
	MaxOutstandingR2T        int      `yaml:"max_outstanding_r2t,omitempty"`
	Digests                  *bool    `yaml:"digests,omitempty"`
	NopInterval              Duration `yaml:"nop_interval,omitempty"`
	NopTimeout               Duration `yaml:"nop_timeout,omitempty"`
	LoginTimeout             Duration `yaml:"login_timeout,omitempty"`
	ShutdownTimeout          Duration `yaml:"shutdown_timeout,omitempty"`
	AbortWait                Duration `yaml:"abort_wait,omitempty"`
	BackendTimeout           Duration `yaml:"backend_timeout,omitempty"`
	AuthFailureDelay         Duration `yaml:"auth_failure_delay,omitempty"`
	MaxSessions              int      `yaml:"max_sessions,omitempty"`
}

// API configures the management API.
type API struct {
	// Socket is the Unix socket path (relative to data_dir), mode 0600.
	// "off" disables it.
	Socket string `yaml:"socket,omitempty"`
	// Listen optionally serves the API on TCP as well (requires TLS and a token).
	Listen    string `yaml:"listen,omitempty"`
	TLSCert   string `yaml:"tls_cert,omitempty"`
	TLSKey    string `yaml:"tls_key,omitempty"`
	TokenFile string `yaml:"token_file,omitempty"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen is host:port for /metrics; empty disables it.
	Listen string `yaml:"listen,omitempty"`
	// Pprof serves /debug/pprof on the metrics address.
	Pprof bool `yaml:"pprof,omitempty"`
}

// Portal is a target portal group: the addresses it listens on.
type Portal struct {
	Tag    uint16   `yaml:"tag"`
	Listen []string `yaml:"listen"`
	// ALUA state of the group: active-optimized (default),
	// active-nonoptimized, standby, unavailable, transitioning.
	ALUAState string `yaml:"alua_state,omitempty"`
}

// Discovery configures discovery sessions.
type Discovery struct {
	CHAP *CHAP `yaml:"chap,omitempty"`
}

// Target is one iSCSI target.
type Target struct {
	Name         string   `yaml:"name"`
	Alias        string   `yaml:"alias,omitempty"`
	PortalGroups []uint16 `yaml:"portal_groups,omitempty"` // default: every group
	ACL          *ACL     `yaml:"acl,omitempty"`
	CHAP         *CHAP    `yaml:"chap,omitempty"`
	LUNs         []LUN    `yaml:"luns"`
}

// ACL restricts who may log into a target. Empty lists allow everyone.
type ACL struct {
	Initiators []string `yaml:"initiators,omitempty"`
	Networks   []string `yaml:"networks,omitempty"`
}

// CHAP holds CHAP credentials. Secrets come inline or from a file that
// only its owner can read.
type CHAP struct {
	User             string `yaml:"user"`
	Secret           string `yaml:"secret,omitempty"`
	SecretFile       string `yaml:"secret_file,omitempty"`
	MutualUser       string `yaml:"mutual_user,omitempty"`
	MutualSecret     string `yaml:"mutual_secret,omitempty"`
	MutualSecretFile string `yaml:"mutual_secret_file,omitempty"`
}

// LUN is one logical unit of a target.
type LUN struct {
	LUN      uint64  `yaml:"lun"`
	Size     Size    `yaml:"size,omitempty"`
	ReadOnly bool    `yaml:"read_only,omitempty"`
	Backend  Backend `yaml:"backend"`
	// Serial and NAA override the identity the daemon generates and keeps.
	Serial string `yaml:"serial,omitempty"`
	NAA    string `yaml:"naa,omitempty"`
}

// Backend says where a LUN's blocks live.
type Backend struct {
	// Type: file (a file or block device), blockmap (a log-structured volume on
	// a store), rbd (a Ceph RBD image).
	Type string `yaml:"type"`

	// file: Path of the file or block device, relative to data_dir unless
	// absolute. Created sparse with the LUN's size when missing.
	Path string `yaml:"path,omitempty"`
	// file: open with O_DIRECT.
	Direct bool `yaml:"direct,omitempty"`

	// blockmap: the store holding the volume, and the volume's name.
	Store  *Store `yaml:"store,omitempty"`
	Volume string `yaml:"volume,omitempty"`
	// blockmap: cache sizes and segment size; zero means defaults.
	MapCacheSize Size `yaml:"map_cache_size,omitempty"`
	SegmentSize  Size `yaml:"segment_size,omitempty"`
	// blockmap: a local write-back cache in front of the store.
	Cache *Cache `yaml:"cache,omitempty"`

	// rbd: the cluster, pool and image.
	Ceph  *Ceph  `yaml:"ceph,omitempty"`
	Image string `yaml:"image,omitempty"`
	// rbd: take RBD's exclusive lock so that two daemons never write the image.
	ExclusiveLock bool `yaml:"exclusive_lock,omitempty"`
}

// Store is an object store under blockmap volumes.
type Store struct {
	// Type: dir, mem, rados, s3.
	Type string `yaml:"type"`
	// dir: the directory, relative to data_dir unless absolute.
	Path string `yaml:"path,omitempty"`
	// rados
	Ceph *Ceph `yaml:"ceph,omitempty"`
	// s3
	S3 *S3 `yaml:"s3,omitempty"`
}

// Ceph locates a Ceph cluster and pool.
type Ceph struct {
	ConfFile       string   `yaml:"conf_file,omitempty"`
	MonHost        string   `yaml:"mon_host,omitempty"`
	User           string   `yaml:"user,omitempty"` // without "client.", default admin
	Keyring        string   `yaml:"keyring,omitempty"`
	Pool           string   `yaml:"pool"`
	Namespace      string   `yaml:"namespace,omitempty"`
	ConnectTimeout Duration `yaml:"connect_timeout,omitempty"`
	// OpTimeout bounds each operation; I/O that the cluster does not
	// answer within it fails with BUSY (default 30s).
	OpTimeout Duration `yaml:"op_timeout,omitempty"`
	// Options are further librados/librbd options ("rbd_cache": "false").
	Options map[string]string `yaml:"options,omitempty"`
}

// S3 locates an S3-compatible bucket.
type S3 struct {
	Endpoint        string `yaml:"endpoint,omitempty"`
	Region          string `yaml:"region,omitempty"`
	Bucket          string `yaml:"bucket"`
	Prefix          string `yaml:"prefix,omitempty"`
	PathStyle       bool   `yaml:"path_style,omitempty"`
	AccessKey       string `yaml:"access_key,omitempty"`
	SecretKey       string `yaml:"secret_key,omitempty"`
	CredentialsFile string `yaml:"credentials_file,omitempty"`
	Profile         string `yaml:"profile,omitempty"`
	// CreateBucket creates the bucket when it does not exist.
	CreateBucket bool `yaml:"create_bucket,omitempty"`
	// MaxRequests bounds the requests in flight (default 32).
	MaxRequests int `yaml:"max_requests,omitempty"`
}

// Cache is a local write-back and read cache for a slow store.
type Cache struct {
	Path        string   `yaml:"path"` // directory, relative to data_dir unless absolute
	Size        Size     `yaml:"size,omitempty"`
	ReadSize    Size     `yaml:"read_size,omitempty"`
	MemReadSize Size     `yaml:"mem_read_size,omitempty"`
	ReadTimeout Duration `yaml:"read_timeout,omitempty"`
	// FullWait bounds how long a write waits for room in a full log.
	FullWait Duration `yaml:"full_wait,omitempty"`
	// UploadHold is how long a growing segment may wait for more appends
	// before it is uploaded.
	UploadHold Duration `yaml:"upload_hold,omitempty"`
}

// Default returns the embedded configuration: one target with one 1 GiB
// thin file-backed LUN 0 under dataDir, one portal on listen.
func Default(listen, dataDir string) *Config {
	if listen == "" {
		listen = DefaultListen
	}
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	return &Config{
		DataDir: dataDir,
		Portals: []Portal{{Tag: 1, Listen: []string{listen}}},
		Targets: []Target{{
			Name: DefaultTargetName,
			LUNs: []LUN{{LUN: 0, Size: DefaultLUNSize, Backend: Backend{Type: "file", Path: DefaultLUNFile}}},
		}},
	}
}

// Parse decodes YAML strictly: unknown fields are errors naming the field.
func Parse(data []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return &c, nil // empty file: all defaults
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			// One line per problem from yaml; keep the message on one line.
			return nil, fmt.Errorf("config: %s", strings.Join(te.Errors, "; "))
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, errors.New("config: more than one YAML document")
	}
	return &c, nil
}

// Load reads, parses, defaults and validates a configuration file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Marshal encodes c as YAML.
func (c *Config) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Save writes c to path atomically: a temporary file in the same directory,
// fsync, rename over path, fsync of the directory.
func (c *Config) Save(path string) error {
	data, err := c.Marshal()
	if err != nil {
		return fmt.Errorf("config: encode: %w", err)
	}
	return WriteFileAtomic(path, data, 0o600)
}

// WriteFileAtomic replaces path with data so that a crash leaves either the
// old or the new content.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Clone returns a deep copy of c (through YAML, which is the schema).
func (c *Config) Clone() *Config {
	data, err := c.Marshal()
	if err != nil {
		panic(fmt.Sprintf("config: clone: %v", err)) // every Config value encodes
	}
	out, err := Parse(data)
	if err != nil {
		panic(fmt.Sprintf("config: clone: %v", err))
	}
	return out
}

// ApplyDefaults fills unset fields with their defaults.
func (c *Config) ApplyDefaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "console"
	}
	if len(c.Portals) == 0 {
		c.Portals = []Portal{{Tag: 1, Listen: []string{DefaultListen}}}
	}
	if c.API.Socket == "" {
		c.API.Socket = "lunway.sock"
	}
	for i := range c.Portals {
		if c.Portals[i].ALUAState == "" {
			c.Portals[i].ALUAState = "active-optimized"
		}
	}
}

// ResolvePath returns p relative to the data directory unless it is absolute.
func (c *Config) ResolvePath(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.DataDir, p)
}

// FieldError is a validation error naming the offending field.
type FieldError struct {
	Field string // e.g. "targets[0].luns[1].size"
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

var (
	// iSCSI names (RFC 3720 3.2.6): iqn.yyyy-mm.reversed.domain[:anything],
	// eui.<16 hex>, naa.<16 or 32 hex>; lower case, at most 223 bytes.
	iqnRe    = regexp.MustCompile(`^iqn\.[0-9]{4}-[0-9]{2}\.[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[a-z0-9.:_-]+)?$`)
	euiRe    = regexp.MustCompile(`^eui\.[0-9A-F]{16}$`)
	naaRe    = regexp.MustCompile(`^naa\.([0-9A-F]{16}|[0-9A-F]{32})$`)
	volumeRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	naaHexRe = regexp.MustCompile(`^(0x)?[0-9a-fA-F]{32}$`)
)

// ValidISCSIName reports whether name is a well-formed iSCSI name.
func ValidISCSIName(name string) bool {
	if len(name) > 223 {
		return false
	}
	return iqnRe.MatchString(name) || euiRe.MatchString(name) || naaRe.MatchString(name)
}

// ValidVolumeName reports whether name may name a blockmap volume or image.
func ValidVolumeName(name string) bool {
	return volumeRe.MatchString(name) && !strings.Contains(name, "..")
}

// Validate checks the whole configuration. Call ApplyDefaults first.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return fieldErr("data_dir", "must not be empty")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fieldErr("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "console", "json":
	default:
		return fieldErr("log.format", "%q is not one of console, json", c.Log.Format)
	}
	if err := c.ISCSI.validate("iscsi"); err != nil {
		return err
	}
	if err := c.API.validate("api", c); err != nil {
		return err
	}
	if c.Metrics.Listen != "" {
		if err := validHostPort(c.Metrics.Listen); err != nil {
			return fieldErr("metrics.listen", "%v", err)
		}
	}
	if len(c.Portals) == 0 {
		return fieldErr("portal_groups", "at least one portal group is required")
	}
	tags := map[uint16]bool{}
	addrs := map[string]string{}
	for i, p := range c.Portals {
		f := fmt.Sprintf("portal_groups[%d]", i)
		if p.Tag == 0 {
			return fieldErr(f+".tag", "must be 1..65535")
		}
		if tags[p.Tag] {
			return fieldErr(f+".tag", "duplicate tag %d", p.Tag)
		}
		tags[p.Tag] = true
		if len(p.Listen) == 0 {
			return fieldErr(f+".listen", "at least one address is required")
		}
		for j, a := range p.Listen {
			ff := fmt.Sprintf("%s.listen[%d]", f, j)
			if err := validHostPort(a); err != nil {
				return fieldErr(ff, "%v", err)
			}
			if prev, dup := addrs[a]; dup {
				return fieldErr(ff, "%s is already used by %s", a, prev)
			}
			addrs[a] = ff
		}
		switch p.ALUAState {
		case "active-optimized", "active-nonoptimized", "standby", "unavailable", "transitioning":
		default:
			return fieldErr(f+".alua_state", "%q is not one of active-optimized, active-nonoptimized, standby, unavailable, transitioning", p.ALUAState)
		}
	}
	if c.Discovery.CHAP != nil {
		if err := c.Discovery.CHAP.validate("discovery.chap"); err != nil {
			return err
		}
	}
	names := map[string]bool{}
	files := map[string]string{}
	for i := range c.Targets {
		t := &c.Targets[i]
		f := fmt.Sprintf("targets[%d]", i)
		if !ValidISCSIName(t.Name) {
			return fieldErr(f+".name", "%q is not a valid iSCSI name (iqn.YYYY-MM.reversed.domain[:id], lower case)", t.Name)
		}
		if names[t.Name] {
			return fieldErr(f+".name", "duplicate target %q", t.Name)
		}
		names[t.Name] = true
		for j, g := range t.PortalGroups {
			if !tags[g] {
				return fieldErr(fmt.Sprintf("%s.portal_groups[%d]", f, j), "no portal group with tag %d", g)
			}
		}
		if t.ACL != nil {
			if err := t.ACL.validate(f + ".acl"); err != nil {
				return err
			}
		}
		if t.CHAP != nil {
			if err := t.CHAP.validate(f + ".chap"); err != nil {
				return err
			}
		}
		luns := map[uint64]bool{}
		for j := range t.LUNs {
			l := &t.LUNs[j]
			lf := fmt.Sprintf("%s.luns[%d]", f, j)
			if l.LUN > 16383 {
				return fieldErr(lf+".lun", "%d is out of range 0..16383", l.LUN)
			}
			if luns[l.LUN] {
				return fieldErr(lf+".lun", "duplicate LUN %d in target %s", l.LUN, t.Name)
			}
			luns[l.LUN] = true
			if err := l.validate(c, lf, files); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *ISCSI) validate(f string) error {
	if s.QueueDepth < 0 || s.QueueDepth > 4096 {
		return fieldErr(f+".queue_depth", "%d is out of range 1..4096", s.QueueDepth)
	}
	check := func(name string, v Size, lo, hi int64) error {
		if v != 0 && (int64(v) < lo || int64(v) > hi) {
			return fieldErr(f+"."+name, "%d is out of range %d..%d", v, lo, hi)
		}
		return nil
	}
	if err := check("max_recv_data_segment_length", s.MaxRecvDataSegmentLength, 512, 1<<24-1); err != nil {
		return err
	}
	if err := check("max_burst_length", s.MaxBurstLength, 512, 1<<24-1); err != nil {
		return err
	}
	if err := check("first_burst_length", s.FirstBurstLength, 512, 1<<24-1); err != nil {
		return err
	}
	if err := check("max_transfer_length", s.MaxTransferLength, 512, 1<<30); err != nil {
		return err
	}
	if mbl := s.MaxBurstLength; s.FirstBurstLength > mbl && (mbl != 0 || s.FirstBurstLength > 1<<20) {
		if mbl == 0 {
			mbl = 1 << 20
		}
		return fieldErr(f+".first_burst_length", "%d exceeds max_burst_length %d", s.FirstBurstLength, mbl)
	}
	if s.MaxOutstandingR2T < 0 || s.MaxOutstandingR2T > 65535 {
		return fieldErr(f+".max_outstanding_r2t", "%d is out of range 1..65535", s.MaxOutstandingR2T)
	}
	for name, d := range map[string]Duration{"nop_interval": s.NopInterval, "nop_timeout": s.NopTimeout,
		"login_timeout": s.LoginTimeout, "shutdown_timeout": s.ShutdownTimeout, "abort_wait": s.AbortWait,
		"backend_timeout": s.BackendTimeout, "auth_failure_delay": s.AuthFailureDelay} {
		if d < 0 {
			return fieldErr(f+"."+name, "must not be negative")
		}
	}
	if s.MaxSessions < 0 {
		return fieldErr(f+".max_sessions", "must not be negative")
	}
	return nil
}

// maxSocketPath is the longest Unix socket path Linux takes (sun_path).
const maxSocketPath = 107

func (a *API) validate(f string, c *Config) error {
	if a.Socket != "off" {
		if a.Socket == "" {
			return fieldErr(f+".socket", "must not be empty (\"off\" disables the socket)")
		}
		p := c.ResolvePath(a.Socket)
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		if len(p) > maxSocketPath {
			return fieldErr(f+".socket", "%s is longer than %d bytes, the limit of a Unix socket path", p, maxSocketPath)
		}
	}
	if a.Listen != "" {
		if err := validHostPort(a.Listen); err != nil {
			return fieldErr(f+".listen", "%v", err)
		}
		if a.TLSCert == "" || a.TLSKey == "" {
			return fieldErr(f+".tls_cert", "api.listen needs tls_cert and tls_key")
		}
		if a.TokenFile == "" {
			return fieldErr(f+".token_file", "api.listen needs a bearer token file")
		}
	}
	return nil
}

func (a *ACL) validate(f string) error {
	for i, n := range a.Initiators {
		if !ValidISCSIName(n) {
			return fieldErr(fmt.Sprintf("%s.initiators[%d]", f, i), "%q is not a valid iSCSI name", n)
		}
	}
	for i, n := range a.Networks {
		if _, err := netip.ParsePrefix(n); err != nil {
			if _, err2 := netip.ParseAddr(n); err2 != nil {
				return fieldErr(fmt.Sprintf("%s.networks[%d]", f, i), "%q is not a CIDR prefix or address", n)
			}
		}
	}
	return nil
}

func (c *CHAP) validate(f string) error {
	if c.User == "" {
		return fieldErr(f+".user", "must not be empty")
	}
	if (c.Secret == "") == (c.SecretFile == "") {
		return fieldErr(f+".secret", "exactly one of secret and secret_file is required")
	}
	if c.MutualUser != "" || c.MutualSecret != "" || c.MutualSecretFile != "" {
		if c.MutualUser == "" {
			return fieldErr(f+".mutual_user", "must not be empty when a mutual secret is set")
		}
		if (c.MutualSecret == "") == (c.MutualSecretFile == "") {
			return fieldErr(f+".mutual_secret", "exactly one of mutual_secret and mutual_secret_file is required")
		}
	}
	return nil
}

func (l *LUN) validate(c *Config, f string, files map[string]string) error {
	if l.Size < 0 || l.Size%512 != 0 {
		return fieldErr(f+".size", "%d is not a multiple of 512 bytes", l.Size)
	}
	if l.NAA != "" && !naaHexRe.MatchString(l.NAA) {
		return fieldErr(f+".naa", "%q is not 32 hex digits (a 16-byte NAA 6 designator)", l.NAA)
	}
	if len(l.Serial) > 64 {
		return fieldErr(f+".serial", "longer than 64 bytes")
	}
	b := &l.Backend
	bf := f + ".backend"
	switch b.Type {
	case "file":
		if b.Path == "" {
			return fieldErr(bf+".path", "required for type file")
		}
		p := filepath.Clean(c.ResolvePath(b.Path))
		if prev, dup := files[p]; dup {
			return fieldErr(bf+".path", "%s is already used by %s", p, prev)
		}
		files[p] = bf
	case "blockmap":
		if b.Store == nil {
			return fieldErr(bf+".store", "required for type blockmap")
		}
		if !ValidVolumeName(b.Volume) {
			return fieldErr(bf+".volume", "%q is not a valid volume name ([A-Za-z0-9][A-Za-z0-9_.-]{0,63})", b.Volume)
		}
		if err := b.Store.validate(bf + ".store"); err != nil {
			return err
		}
		if b.SegmentSize != 0 && (b.SegmentSize < 64<<10 || b.SegmentSize > 256<<20 || b.SegmentSize%4096 != 0) {
			return fieldErr(bf+".segment_size", "%d is not a multiple of 4 KiB in 64 KiB..256 MiB", b.SegmentSize)
		}
		if b.MapCacheSize < 0 {
			return fieldErr(bf+".map_cache_size", "must not be negative")
		}
		if b.Cache != nil {
			if b.Cache.Path == "" {
				return fieldErr(bf+".cache.path", "required")
			}
			if b.Cache.Size < 0 || b.Cache.ReadSize < 0 || b.Cache.MemReadSize < 0 || b.Cache.ReadTimeout < 0 {
				return fieldErr(bf+".cache", "sizes and timeouts must not be negative")
			}
		}
		key := "volume:" + b.Store.key(c) + "/" + b.Volume
		if prev, dup := files[key]; dup {
			return fieldErr(bf+".volume", "volume %s is already used by %s", b.Volume, prev)
		}
		files[key] = bf
	case "rbd":
		if b.Ceph == nil {
			return fieldErr(bf+".ceph", "required for type rbd")
		}
		if err := b.Ceph.validate(bf + ".ceph"); err != nil {
			return err
		}
		if b.Image == "" || strings.ContainsAny(b.Image, "/@ ") {
			return fieldErr(bf+".image", "%q is not a valid RBD image name", b.Image)
		}
	case "":
		return fieldErr(bf+".type", "required: file, blockmap or rbd")
	default:
		return fieldErr(bf+".type", "%q is not one of file, blockmap, rbd", b.Type)
	}
	return nil
}

func (s *Store) validate(f string) error {
	switch s.Type {
	case "dir":
		if s.Path == "" {
			return fieldErr(f+".path", "required for store type dir")
		}
	case "mem":
	case "rados":
		if s.Ceph == nil {
			return fieldErr(f+".ceph", "required for store type rados")
		}
		return s.Ceph.validate(f + ".ceph")
	case "s3":
		if s.S3 == nil {
			return fieldErr(f+".s3", "required for store type s3")
		}
		if s.S3.Bucket == "" {
			return fieldErr(f+".s3.bucket", "required")
		}
		if (s.S3.AccessKey == "") != (s.S3.SecretKey == "") {
			return fieldErr(f+".s3.secret_key", "access_key and secret_key go together")
		}
	case "":
		return fieldErr(f+".type", "required: dir, mem, rados or s3")
	default:
		return fieldErr(f+".type", "%q is not one of dir, mem, rados, s3", s.Type)
	}
	return nil
}

func (s *Store) key(c *Config) string {
	switch s.Type {
	case "dir":
		return "dir:" + filepath.Clean(c.ResolvePath(s.Path))
	case "rados":
		if s.Ceph != nil {
			return "rados:" + s.Ceph.Pool + "/" + s.Ceph.Namespace
		}
	case "s3":
		if s.S3 != nil {
			return "s3:" + s.S3.Endpoint + "/" + s.S3.Bucket + "/" + s.S3.Prefix
		}
	}
	return s.Type
}

func (c *Ceph) validate(f string) error {
	if c.ConfFile == "" && c.MonHost == "" {
		return fieldErr(f+".mon_host", "one of mon_host and conf_file is required")
	}
	if c.Pool == "" {
		return fieldErr(f+".pool", "required")
	}
	if c.ConnectTimeout < 0 || c.OpTimeout < 0 {
		return fieldErr(f+".connect_timeout", "timeouts must not be negative")
	}
	return nil
}

func validHostPort(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not host:port", a)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && host != "localhost" {
			return fmt.Errorf("%q: host must be an IP address", a)
		}
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: bad port", a)
	}
	return nil
}

// Size is a byte count that YAML may spell as 1073741824, "1GiB", "512MiB",
// "4KiB", "1G" (binary units: K, M, G, T, P with or without "iB"/"B").
type Size int64

// ParseSize parses a byte count.
func ParseSize(s string) (Size, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty size")
	}
	i := len(s)
	for i > 0 && (s[i-1] < '0' || s[i-1] > '9') {
		i--
	}
	num, unit := s[:i], strings.TrimSpace(strings.ToUpper(s[i:]))
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size (e.g. 1GiB, 512MiB, 4096)", s)
	}
	unit = strings.TrimSuffix(strings.TrimSuffix(unit, "B"), "I")
	shift := map[string]uint{"": 0, "K": 10, "M": 20, "G": 30, "T": 40, "P": 50}
	sh, ok := shift[unit]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit (use KiB, MiB, GiB, TiB)", s)
	}
	if n > (1<<63-1)>>sh {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return Size(n << sh), nil
}

// String formats the size with the largest exact binary unit.
func (s Size) String() string {
	units := []string{"PiB", "TiB", "GiB", "MiB", "KiB"}
	shifts := []uint{50, 40, 30, 20, 10}
	for i, sh := range shifts {
		if s != 0 && s%(1<<sh) == 0 {
			return strconv.FormatInt(int64(s)>>sh, 10) + units[i]
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// UnmarshalYAML accepts integers and unit strings.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: size must be a number or a string like 1GiB", n.Line)
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*s = v
	return nil
}

// MarshalYAML writes the unit form.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }

// Duration is a time.Duration spelled like "30s" or "5m" in YAML.
type Duration time.Duration

// UnmarshalYAML parses Go duration syntax.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: duration must be a string like 30s", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (e.g. 500ms, 30s, 5m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes Go duration syntax.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the time.Duration, or def when unset.
func (d Duration) D(def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}
