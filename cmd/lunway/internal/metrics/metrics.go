package metrics

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockmap"
	"github.com/lunway/lunway/target/iscsi"
	"github.com/lunway/lunway/target/scsi"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Source produces the snapshot a scrape publishes. It is called once per
// scrape, concurrently with everything else.
type Source interface {
	MetricsSnapshot() Snapshot
}

// Snapshot is the state of the daemon at one instant.
type Snapshot struct {
	LUNs     []LUN
	Targets  []iscsi.TargetStats
	Backends []Backend
	// ConfigChanges and ConfigChangesFailed count management API changes.
	ConfigChanges, ConfigChangesFailed uint64
	Version                            string
}

// LUN is one logical unit's statistics.
type LUN struct {
	Target    string
	LUN       uint64
	Backend   string // backend type: file, blockmap, rbd
	SizeBytes int64
	Health    blockdev.Health
	SCSI      scsi.LUStats
	// Volume is set for blockmap LUNs.
	Volume *blockmap.Stats
	// Cache is set for LUNs behind a local write-back/read cache.
	Cache *CacheStats
}

// CacheStats is what the metrics need from a LUN's local cache (package
// cache, in front of slow stores). The daemon fills it from the cache's
// own snapshot.
type CacheStats struct {
	// ReadHits are reads served locally (write-back log, memory, disk);
	// ReadMisses went to the store; ReadTimeouts gave up on an
	// unreachable store.
	ReadHits, ReadMisses, ReadEvictions, ReadTimeouts uint64
	// LogBytesUsed and LogBytesLimit describe the write-back log.
	LogBytesUsed, LogBytesLimit int64
	// PendingUploads counts log entries not yet in the store; the oldest
	// is OldestPendingSecs old. WritersWaiting wait for room in a full log.
	PendingUploads    int64
	OldestPendingSecs float64
	WritersWaiting    int64
	// UploadedBytes went to the store; UploadFailures are failed attempts
	// (retried). StoreFailing is set while the store does not answer.
	UploadedBytes, UploadFailures uint64
	StoreFailing                  bool
}

// Backend is one backend's health.
type Backend struct {
	Name, Type string
	Health     blockdev.Health
}

// senseKeys names the SCSI sense keys (SPC-4 table 49).
var senseKeys = [16]string{
	"no_sense", "recovered_error", "not_ready", "medium_error", "hardware_error", "illegal_request",
	"unit_attention", "data_protect", "blank_check", "vendor_specific", "copy_aborted", "aborted_command",
	"reserved_c", "volume_overflow", "miscompare", "reserved_f",
}

// alwaysKeys are the sense keys published even at zero, so that rate()
// sees the first error; the others appear when they first occur.
var alwaysKeys = [16]bool{2: true, 3: true, 4: true, 5: true, 6: true, 7: true, 0xb: true, 0xe: true}

// Collector is a prometheus.Collector over a Source.
type Collector struct {
	src  Source
	d    descs
	lat  []float64 // latency bucket upper bounds in seconds
	info *prometheus.Desc
}

type descs struct {
	reads, writes, others, readBytes, writeBytes  *prometheus.Desc
	readLat, writeLat, inFlight, tasks, errors    *prometheus.Desc
	busy, conflicts, health, size                 *prometheus.Desc
	volCacheHits, volCacheMisses, volWA, volLWA   *prometheus.Desc
	volGuestW, volBackendW, volBackendR, volLive  *prometheus.Desc
	volStored, volDirty, volMem, volGC, volGCMove *prometheus.Desc
	volCkpt, volSnaps, volErr                     *prometheus.Desc
	cacheHits, cacheMisses, cacheEvict            *prometheus.Desc
	cacheLogUsed, cacheLogLimit, cachePending     *prometheus.Desc
	cacheUploaded, cacheTimeouts, cacheOldest     *prometheus.Desc
	cacheWaiting, cacheUpFail, cacheFailing       *prometheus.Desc
	backendHealth                                 *prometheus.Desc
	tSessions, tLogins, tCommands, tPDUs, tBytes  *prometheus.Desc
	changes                                       *prometheus.Desc
}

// NewCollector returns a Collector reading src at every scrape.
func NewCollector(src Source) *Collector {
	lun := []string{"target", "lun"}
	vol := []string{"target", "lun"}
	n := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("lunway_"+name, help, labels, nil)
	}
	c := &Collector{src: src, info: n("build_info", "Always 1; the version label says which build runs.", "version")}
	c.d = descs{
		reads:      n("lun_reads_total", "READ commands completed.", lun...),
		writes:     n("lun_writes_total", "WRITE-class commands completed (WRITE, WRITE SAME, COMPARE AND WRITE...).", lun...),
		others:     n("lun_other_commands_total", "Other commands completed.", lun...),
		readBytes:  n("lun_read_bytes_total", "Bytes returned by successful reads.", lun...),
		writeBytes: n("lun_write_bytes_total", "Bytes written by successful writes.", lun...),
		readLat:    n("lun_read_latency_seconds", "Latency of READ commands, from start to status.", lun...),
		writeLat:   n("lun_write_latency_seconds", "Latency of WRITE-class commands, from start to status.", lun...),
		inFlight:   n("lun_commands_in_flight", "Commands executing now (queue depth at the device).", lun...),
		tasks:      n("lun_tasks_open", "Tasks between arrival and completion, including those waiting for ordering.", lun...),
		errors:     n("lun_errors_total", "CHECK CONDITION results by sense key.", "target", "lun", "sense_key"),
		busy:       n("lun_busy_total", "BUSY results (backend temporarily unavailable; initiators retry).", lun...),
		conflicts:  n("lun_reservation_conflicts_total", "RESERVATION CONFLICT results.", lun...),
		health:     n("lun_health", "LUN health: 0 ok, 1 degraded, 2 unavailable.", "target", "lun", "backend"),
		size:       n("lun_size_bytes", "LUN capacity.", lun...),

		volCacheHits:   n("volume_map_cache_hits_total", "Block map page cache hits.", vol...),
		volCacheMisses: n("volume_map_cache_misses_total", "Block map page cache misses.", vol...),
		volWA:          n("volume_write_amplification", "Backend bytes written per guest byte written since the volume was opened.", vol...),
		volLWA:         n("volume_lifetime_write_amplification", "Backend bytes written per guest byte written over the volume's life.", vol...),
		volGuestW:      n("volume_guest_write_bytes_total", "Guest bytes written to the volume since open.", vol...),
		volBackendW:    n("volume_backend_write_bytes_total", "Bytes written to the store (data, map, checkpoints) since open.", vol...),
		volBackendR:    n("volume_backend_read_bytes_total", "Bytes read from the store since open.", vol...),
		volLive:        n("volume_live_bytes", "Bytes the committed map references in the volume's segments.", vol...),
		volStored:      n("volume_stored_bytes", "Bytes the volume's segments occupy in the store.", vol...),
		volDirty:       n("volume_dirty_bytes", "Written data not yet in the store.", vol...),
		volMem:         n("volume_memory_bytes", "Estimated memory of the volume (cache, dirty data, map delta).", vol...),
		volGC:          n("volume_gc_runs_total", "Garbage collection passes.", vol...),
		volGCMove:      n("volume_gc_moved_bytes_total", "Live bytes garbage collection rewrote.", vol...),
		volCkpt:        n("volume_checkpoints_total", "Checkpoints committed.", vol...),
		volSnaps:       n("volume_snapshots", "Snapshots of the volume.", vol...),
		volErr:         n("volume_store_errors_outstanding", "1 while the last write to the store failed (it is retried).", vol...),

		cacheHits:     n("cache_read_hits_total", "Local read cache hits.", lun...),
		cacheMisses:   n("cache_read_misses_total", "Local read cache misses.", lun...),
		cacheEvict:    n("cache_read_evictions_total", "Local read cache evictions.", lun...),
		cacheLogUsed:  n("cache_log_used_bytes", "Bytes in the write-back log.", lun...),
		cacheLogLimit: n("cache_log_limit_bytes", "Size bound of the write-back log.", lun...),
		cachePending:  n("cache_pending_uploads", "Write-back log entries not yet uploaded.", lun...),
		cacheUploaded: n("cache_uploaded_bytes_total", "Bytes uploaded from the write-back log.", lun...),
		cacheTimeouts: n("cache_read_timeouts_total", "Reads that gave up on an unreachable store (answered BUSY).", lun...),
		cacheOldest:   n("cache_oldest_pending_seconds", "Age of the oldest write-back log entry not yet uploaded.", lun...),
		cacheWaiting:  n("cache_writers_waiting", "Writes waiting for room in a full write-back log.", lun...),
		cacheUpFail:   n("cache_upload_failures_total", "Failed uploads to the store (retried).", lun...),
		cacheFailing:  n("cache_store_failing", "1 while the store behind the cache does not answer.", lun...),

		backendHealth: n("backend_health", "Backend health: 0 ok, 1 degraded, 2 unavailable.", "backend", "type"),

		tSessions: n("target_sessions", "Sessions logged in (discovery sessions under target=\"_discovery\").", "target"),
		tLogins:   n("target_logins_total", "Logins by result: ok, auth_failed (CHAP), denied (ACL), failed (other).", "target", "result"),
		tCommands: n("target_commands_total", "SCSI commands received.", "target"),
		tPDUs:     n("target_pdus_total", "iSCSI PDUs by direction.", "target", "direction"),
		tBytes:    n("target_bytes_total", "iSCSI bytes by direction.", "target", "direction"),

		changes: n("config_changes_total", "Management API changes by result.", "result"),
	}
	for _, b := range scsi.LatencyBounds() {
		c.lat = append(c.lat, b.Seconds())
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.info
	for _, d := range []*prometheus.Desc{
		c.d.reads, c.d.writes, c.d.others, c.d.readBytes, c.d.writeBytes, c.d.readLat, c.d.writeLat,
		c.d.inFlight, c.d.tasks, c.d.errors, c.d.busy, c.d.conflicts, c.d.health, c.d.size,
		c.d.volCacheHits, c.d.volCacheMisses, c.d.volWA, c.d.volLWA, c.d.volGuestW, c.d.volBackendW,
		c.d.volBackendR, c.d.volLive, c.d.volStored, c.d.volDirty, c.d.volMem, c.d.volGC, c.d.volGCMove,
		c.d.volCkpt, c.d.volSnaps, c.d.volErr,
		c.d.cacheHits, c.d.cacheMisses, c.d.cacheEvict, c.d.cacheLogUsed, c.d.cacheLogLimit, c.d.cachePending,
		c.d.cacheUploaded, c.d.cacheTimeouts, c.d.cacheOldest, c.d.cacheWaiting, c.d.cacheUpFail, c.d.cacheFailing,
		c.d.backendHealth, c.d.tSessions, c.d.tLogins, c.d.tCommands, c.d.tPDUs, c.d.tBytes,
		c.d.changes,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.MetricsSnapshot()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	version := s.Version
	if version == "" {
		version = "unknown"
	}
	gauge(c.info, 1, version)
	for _, l := range s.LUNs {
		t, n := l.Target, strconv.FormatUint(l.LUN, 10)
		st := &l.SCSI
		counter(c.d.reads, float64(st.Reads), t, n)
		counter(c.d.writes, float64(st.Writes), t, n)
		counter(c.d.others, float64(st.Others), t, n)
		counter(c.d.readBytes, float64(st.ReadBytes), t, n)
		counter(c.d.writeBytes, float64(st.WriteBytes), t, n)
		ch <- c.histogram(c.d.readLat, st.ReadLatency, st.ReadLatencySum, t, n)
		ch <- c.histogram(c.d.writeLat, st.WriteLatency, st.WriteLatencySum, t, n)
		gauge(c.d.inFlight, float64(st.InFlight), t, n)
		gauge(c.d.tasks, float64(st.TasksOpen), t, n)
		for k, v := range st.ErrorsBySenseKey {
			if v != 0 || alwaysKeys[k] {
				counter(c.d.errors, float64(v), t, n, senseKeys[k])
			}
		}
		counter(c.d.busy, float64(st.Busy), t, n)
		counter(c.d.conflicts, float64(st.Conflicts), t, n)
		gauge(c.d.health, float64(l.Health), t, n, l.Backend)
		gauge(c.d.size, float64(l.SizeBytes), t, n)
		if v := l.Volume; v != nil {
			counter(c.d.volCacheHits, float64(v.CacheHits), t, n)
			counter(c.d.volCacheMisses, float64(v.CacheMisses), t, n)
			gauge(c.d.volWA, v.WriteAmplification, t, n)
			lwa := 0.0
			if v.LifetimeGuestBytes > 0 {
				lwa = float64(v.LifetimeBackendBytes) / float64(v.LifetimeGuestBytes)
			}
			gauge(c.d.volLWA, lwa, t, n)
			counter(c.d.volGuestW, float64(v.GuestWriteBytes), t, n)
			counter(c.d.volBackendW, float64(v.BackendWriteBytes), t, n)
			counter(c.d.volBackendR, float64(v.BackendReadBytes), t, n)
			gauge(c.d.volLive, float64(v.LiveBytes), t, n)
			gauge(c.d.volStored, float64(v.StoredBytes), t, n)
			gauge(c.d.volDirty, float64(v.DirtyBytes), t, n)
			gauge(c.d.volMem, float64(v.MemoryEstimate), t, n)
			counter(c.d.volGC, float64(v.GCRuns), t, n)
			counter(c.d.volGCMove, float64(v.GCBytesMoved), t, n)
			counter(c.d.volCkpt, float64(v.Checkpoints), t, n)
			gauge(c.d.volSnaps, float64(v.Snapshots), t, n)
			gauge(c.d.volErr, b2f(v.ErrorsOutstanding), t, n)
		}
		if cs := l.Cache; cs != nil {
			counter(c.d.cacheHits, float64(cs.ReadHits), t, n)
			counter(c.d.cacheMisses, float64(cs.ReadMisses), t, n)
			counter(c.d.cacheEvict, float64(cs.ReadEvictions), t, n)
			gauge(c.d.cacheLogUsed, float64(cs.LogBytesUsed), t, n)
			gauge(c.d.cacheLogLimit, float64(cs.LogBytesLimit), t, n)
			gauge(c.d.cachePending, float64(cs.PendingUploads), t, n)
			counter(c.d.cacheUploaded, float64(cs.UploadedBytes), t, n)
			counter(c.d.cacheTimeouts, float64(cs.ReadTimeouts), t, n)
			gauge(c.d.cacheOldest, cs.OldestPendingSecs, t, n)
			gauge(c.d.cacheWaiting, float64(cs.WritersWaiting), t, n)
			counter(c.d.cacheUpFail, float64(cs.UploadFailures), t, n)
			gauge(c.d.cacheFailing, b2f(cs.StoreFailing), t, n)
		}
	}
	for _, b := range s.Backends {
		gauge(c.d.backendHealth, float64(b.Health), b.Name, b.Type)
	}
	for _, ts := range s.Targets {
		name := ts.Name
		if name == "" {
			name = "_discovery"
		}
		gauge(c.d.tSessions, float64(ts.Sessions), name)
		counter(c.d.tLogins, float64(ts.LoginsOK), name, "ok")
		counter(c.d.tLogins, float64(ts.LoginsAuthFailed), name, "auth_failed")
		counter(c.d.tLogins, float64(ts.LoginsDenied), name, "denied")
		counter(c.d.tLogins, float64(ts.LoginsFailed), name, "failed")
		counter(c.d.tCommands, float64(ts.Commands), name)
		counter(c.d.tPDUs, float64(ts.PDUsIn), name, "in")
		counter(c.d.tPDUs, float64(ts.PDUsOut), name, "out")
		counter(c.d.tBytes, float64(ts.BytesIn), name, "in")
		counter(c.d.tBytes, float64(ts.BytesOut), name, "out")
	}
	counter(c.d.changes, float64(s.ConfigChanges-min(s.ConfigChangesFailed, s.ConfigChanges)), "ok")
	counter(c.d.changes, float64(s.ConfigChangesFailed), "failed")
}

// histogram builds a Prometheus histogram from per-bucket counts (the
// last bucket counts everything above the last bound) and a sum in ns.
func (c *Collector) histogram(d *prometheus.Desc, counts [scsi.NumLatencyBuckets]uint64, sumNanos uint64, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(c.lat))
	var cum uint64
	for i, ub := range c.lat {
		cum += counts[i]
		buckets[ub] = cum
	}
	total := cum + counts[len(counts)-1]
	return prometheus.MustNewConstHistogram(d, total, time.Duration(sumNanos).Seconds(), buckets, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// NewRegistry returns a registry with a Collector over src and the Go
// runtime and process collectors.
func NewRegistry(src Source) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(src), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves /metrics from reg and, when pprof is set, the runtime
// profiles under /debug/pprof/. Anything else is 404.
func Handler(reg *prometheus.Registry, withPprof bool, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slogAdapter{log},
		ErrorHandling: promhttp.ContinueOnError,
		Timeout:       30 * time.Second,
	}))
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Println(v ...any) {
	if a.log != nil {
		a.log.Warn("metrics", "err", v)
	}
}
