package scsi

import (
	"sync/atomic"
	"time"
)

// latencyBounds are the upper bounds of the latency histogram buckets of
// LUStats; the last bucket counts everything slower. Never written.
var latencyBounds = [...]time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second,
}

// NumLatencyBuckets is the number of latency histogram buckets.
const NumLatencyBuckets = len(latencyBounds) + 1

// LatencyBounds returns the upper bounds of the latency buckets of
// LUStats; bucket NumLatencyBuckets-1 counts everything slower.
func LatencyBounds() [NumLatencyBuckets - 1]time.Duration { return latencyBounds }

// LUStats is a snapshot of one LU's counters, for the daemon to publish.
// Counters only grow (except the gauges InFlight and TasksOpen).
type LUStats struct {
	Reads, Writes, Others     uint64 // completed commands by class
	ReadBytes, WriteBytes     uint64 // data moved by successful READ/WRITE-class commands
	ReadLatency, WriteLatency [NumLatencyBuckets]uint64
	// ReadLatencySum and WriteLatencySum are the totals in nanoseconds.
	ReadLatencySum, WriteLatencySum uint64
	// ErrorsBySenseKey counts CHECK CONDITION results by sense key.
	ErrorsBySenseKey [16]uint64
	// Busy counts BUSY results (transient backend trouble), Conflicts
	// RESERVATION CONFLICT results.
	Busy, Conflicts uint64
	// InFlight is the number of commands executing now; TasksOpen the
	// number of tasks between Begin and End.
	InFlight  int64
	TasksOpen int
}

type luStats struct {
	reads, writes, others   atomic.Uint64
	readBytes, writeBytes   atomic.Uint64
	readLat, writeLat       [NumLatencyBuckets]atomic.Uint64
	readLatSum, writeLatSum atomic.Uint64
	senseKeys               [16]atomic.Uint64
	busy, conflicts         atomic.Uint64
	inFlight                atomic.Int64
}

func (s *luStats) begin() { s.inFlight.Add(1) }

func latencyBucket(d time.Duration) int {
	for i, b := range latencyBounds {
		if d <= b {
			return i
		}
	}
	return len(latencyBounds)
}

// opClass sorts opcodes into reads (1), writes (2) and others (0).
func opClass(op byte) int {
	switch op {
	case 0x08, 0x28, 0xa8, 0x88:
		return 1
	case 0x0a, 0x2a, 0xaa, 0x8a, 0x2e, 0xae, 0x8e, 0x41, 0x93, 0x89, 0x8b:
		return 2
	}
	return 0
}

func (s *luStats) end(op byte, res *Result, d time.Duration) {
	s.inFlight.Add(-1)
	switch res.Status {
	case StatusCheckCondition:
		if len(res.Sense) >= 3 {
			key := res.Sense[2]
			if res.Sense[0]&0x7f >= 0x72 {
				key = res.Sense[1]
			}
			s.senseKeys[key&0x0f].Add(1)
		}
	case StatusBusy:
		s.busy.Add(1)
	case StatusReservationConflict:
		s.conflicts.Add(1)
	}
	ok := res.Status == StatusGood
	switch opClass(op) {
	case 1:
		s.reads.Add(1)
		s.readLat[latencyBucket(d)].Add(1)
		s.readLatSum.Add(uint64(d))
		if ok {
			s.readBytes.Add(uint64(len(res.Data)))
		}
	case 2:
		s.writes.Add(1)
		s.writeLat[latencyBucket(d)].Add(1)
		s.writeLatSum.Add(uint64(d))
		if ok {
			s.writeBytes.Add(uint64(res.TransferLen))
		}
	default:
		s.others.Add(1)
	}
}

func (s *luStats) snapshot() LUStats {
	var out LUStats
	out.Reads, out.Writes, out.Others = s.reads.Load(), s.writes.Load(), s.others.Load()
	out.ReadBytes, out.WriteBytes = s.readBytes.Load(), s.writeBytes.Load()
	for i := range out.ReadLatency {
		out.ReadLatency[i] = s.readLat[i].Load()
		out.WriteLatency[i] = s.writeLat[i].Load()
	}
	out.ReadLatencySum, out.WriteLatencySum = s.readLatSum.Load(), s.writeLatSum.Load()
	for i := range out.ErrorsBySenseKey {
		out.ErrorsBySenseKey[i] = s.senseKeys[i].Load()
	}
	out.Busy, out.Conflicts = s.busy.Load(), s.conflicts.Load()
	out.InFlight = s.inFlight.Load()
	return out
}
