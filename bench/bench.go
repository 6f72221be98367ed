package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lunway/lunway/target/initiator"
)

// Workload describes one measured run.
type Workload struct {
	Name string
	// BlockSize of every I/O in bytes (a multiple of the LUN's block size).
	BlockSize int
	// QueueDepth is the number of I/Os kept in flight.
	QueueDepth int
	// Random picks aligned offsets uniformly in the span; otherwise each
	// queue slot walks its own sequential stripe.
	Random bool
	// ReadPercent is the share of reads (0 = all writes, 100 = all reads).
	ReadPercent int
	// Duration of the measured phase.
	Duration time.Duration
	// SpanBytes limits offsets to the first SpanBytes of the LUN (0: all).
	SpanBytes int64
}

// Standard returns the workloads of the target-core benchmark: 4 KiB random
// read and write at queue depth 1 and 32, 1 MiB sequential read and write.
func Standard(d time.Duration) []Workload {
	return []Workload{
		{Name: "randread-4k-qd1", BlockSize: 4 << 10, QueueDepth: 1, Random: true, ReadPercent: 100, Duration: d},
		{Name: "randread-4k-qd32", BlockSize: 4 << 10, QueueDepth: 32, Random: true, ReadPercent: 100, Duration: d},
		{Name: "randwrite-4k-qd1", BlockSize: 4 << 10, QueueDepth: 1, Random: true, ReadPercent: 0, Duration: d},
		{Name: "randwrite-4k-qd32", BlockSize: 4 << 10, QueueDepth: 32, Random: true, ReadPercent: 0, Duration: d},
		{Name: "seqread-1m-qd8", BlockSize: 1 << 20, QueueDepth: 8, ReadPercent: 100, Duration: d},
		{Name: "seqwrite-1m-qd8", BlockSize: 1 << 20, QueueDepth: 8, ReadPercent: 0, Duration: d},
	}
}

// Result of one workload run.
type Result struct {
	Workload   string        `json:"workload"`
	Ops        int64         `json:"ops"`
	Bytes      int64         `json:"bytes"`
	Elapsed    time.Duration `json:"elapsed_ns"`
	IOPS       float64       `json:"iops"`
	MiBps      float64       `json:"mib_per_s"`
	P50        time.Duration `json:"p50_ns"`
	P99        time.Duration `json:"p99_ns"`
	P999       time.Duration `json:"p999_ns"`
	Errors     int64         `json:"errors"`
	QueueDepth int           `json:"queue_depth"`
	BlockSize  int           `json:"block_size"`
}

// Target is a parsed iscsi:// URL.
type Target struct {
	Addr   string // host:port
	IQN    string
	LUN    uint64
	User   string
	Secret string
}

// ParseURL parses iscsi://[user[%secret]@]host[:port]/iqn/lun.
func ParseURL(s string) (Target, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "iscsi" {
		return Target{}, fmt.Errorf("bench: %q is not an iscsi://host[:port]/iqn/lun URL", s)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 || parts[0] == "" {
		return Target{}, fmt.Errorf("bench: %q: path must be /iqn/lun", s)
	}
	lun, err := strconv.ParseUint(parts[1], 10, 64)
	if err != nil {
		return Target{}, fmt.Errorf("bench: %q: bad LUN %q", s, parts[1])
	}
	host := u.Host
	if u.Port() == "" {
		host += ":3260"
	}
	t := Target{Addr: host, IQN: parts[0], LUN: lun}
	if u.User != nil {
		// libiscsi separates user and secret with '%'.
		t.User, t.Secret, _ = strings.Cut(u.User.Username(), "%")
		if p, ok := u.User.Password(); ok {
			t.Secret = p
		}
	}
	return t, nil
}

// Dial logs in to t.
func Dial(ctx context.Context, t Target) (*initiator.Session, error) {
	opts := &initiator.Options{TargetName: t.IQN, InitiatorName: "iqn.2026-11.dev.lunway:bench"}
	if t.User != "" {
		opts.CHAP = &initiator.CHAP{User: t.User, Secret: t.Secret}
	}
	s, err := initiator.Dial(ctx, t.Addr, opts)
	if err != nil {
		return nil, err
	}
	if _, err := s.ClearUnitAttentions(ctx, t.LUN); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Run measures w on LUN lun of an established session. Writes carry
// pseudo-random data (no compression or zero detection can flatter them).
func Run(ctx context.Context, s *initiator.Session, lun uint64, w Workload) (Result, error) {
	if w.BlockSize <= 0 || w.QueueDepth <= 0 || w.Duration <= 0 {
		return Result{}, errors.New("bench: workload needs block size, queue depth and duration")
	}
	capy, err := s.ReadCapacity16(ctx, lun)
	if err != nil {
		return Result{}, fmt.Errorf("bench: READ CAPACITY: %w", err)
	}
	bs := int(capy.BlockSize)
	if w.BlockSize%bs != 0 {
		return Result{}, fmt.Errorf("bench: block size %d is not a multiple of the LUN's %d", w.BlockSize, bs)
	}
	span := int64(capy.Blocks) * int64(bs)
	if w.SpanBytes > 0 && w.SpanBytes < span {
		span = w.SpanBytes
	}
	slots := span / int64(w.BlockSize)
	if slots < int64(w.QueueDepth) {
		return Result{}, fmt.Errorf("bench: LUN too small for %d x %d bytes", w.QueueDepth, w.BlockSize)
	}
	// One goroutine keeps QueueDepth commands in flight: the session's
	// reader hands each completion over a channel and the loop below starts
	// the slot's next command, as an event-driven initiator (libiscsi)
	// does. A goroutine per slot would cost the initiator a wake-up per
	// command, CPU that the target under test shares on a small machine.
	type slotState struct {
		rng  *rand.Rand
		buf  []byte
		cdb  []byte
		next int64 // sequential: the next slot of the stripe
		t0   time.Time
		done func(*initiator.Result, error)
		end  time.Time
		res  *initiator.Result
		err  error
	}
	// Buffers are filled before the clock starts.
	seed := uint64(time.Now().UnixNano())
	stripe := slots / int64(w.QueueDepth)
	compl := make(chan int, w.QueueDepth)
	st := make([]slotState, w.QueueDepth)
	for q := range st {
		x := &st[q]
		x.rng = rand.New(rand.NewPCG(uint64(q), seed))
		x.buf = make([]byte, w.BlockSize)
		for i := 0; i+8 <= len(x.buf); i += 8 {
			binary.LittleEndian.PutUint64(x.buf[i:], x.rng.Uint64())
		}
		x.cdb = make([]byte, 16)
		// Sequential slots: stripe q of QueueDepth equal stripes.
		x.next = int64(q) * stripe
		x.done = func(res *initiator.Result, err error) {
			x.end, x.res, x.err = time.Now(), res, err
			compl <- q // never blocks: a slot has one command in flight
		}
	}
	issue := func(q int) error {
		x := &st[q]
		var slot int64
		if w.Random {
			slot = x.rng.Int64N(slots)
		} else {
			slot = x.next
			if x.next++; x.next >= int64(q+1)*stripe {
				x.next = int64(q) * stripe
			}
		}
		lba := uint64(slot) * uint64(w.BlockSize/bs)
		read := w.ReadPercent >= 100 || (w.ReadPercent > 0 && x.rng.IntN(100) < w.ReadPercent)
		cmd := &initiator.Command{LUN: lun, CDB: x.cdb}
		clear(x.cdb)
		binary.BigEndian.PutUint64(x.cdb[2:], lba)
		binary.BigEndian.PutUint32(x.cdb[10:], uint32(w.BlockSize/bs))
		if read {
			x.cdb[0] = 0x88 // READ (16)
			cmd.Read, cmd.ReadBuf = true, x.buf
		} else {
			x.cdb[0] = 0x8a // WRITE (16)
			binary.LittleEndian.PutUint64(x.buf, x.rng.Uint64())
			cmd.Write, cmd.Data = true, x.buf
		}
		x.t0 = time.Now()
		return s.StartFunc(ctx, cmd, x.done)
	}
	var (
		ops, errs int64
		lats      = make([]time.Duration, 0, 1<<16)
		firstErr  error
		inflight  int
	)
	start := time.Now()
	deadline := start.Add(w.Duration)
	// Every slot completes at least one I/O, however loaded the machine.
	for q := range st {
		if err := issue(q); err != nil {
			firstErr = err
			break
		}
		inflight++
	}
	// complete accounts for slot q's command and starts its next one.
	complete := func(q int) {
		inflight--
		x := &st[q]
		err := x.err
		if err == nil {
			err = x.res.Err()
		}
		if err != nil {
			errs++
			if firstErr == nil {
				firstErr = err
			}
			return
		}
		lats = append(lats, x.end.Sub(x.t0))
		ops++
		if firstErr == nil && time.Now().Before(deadline) {
			if err := issue(q); err != nil {
				firstErr = err
				return
			}
			inflight++
		}
	}
	for inflight > 0 {
		select {
		case q := <-compl:
			// The next commands of every completion at hand go out
			// in one write.
			s.Cork()
			complete(q)
			for more := true; more; {
				select {
				case q := <-compl:
					complete(q)
				default:
					more = false
				}
			}
			s.Uncork()
		case <-ctx.Done():
			if firstErr == nil {
				firstErr = ctx.Err()
			}
			inflight = 0
		}
	}
	elapsed := time.Since(start)
	if firstErr != nil {
		return Result{}, fmt.Errorf("bench: %s: %w", w.Name, firstErr)
	}
	slices.Sort(lats)
	pct := func(p float64) time.Duration {
		if len(lats) == 0 {
			return 0
		}
		return lats[min(len(lats)-1, int(p*float64(len(lats))))]
	}
	n := ops
	return Result{
		Workload: w.Name, Ops: n, Bytes: n * int64(w.BlockSize), Elapsed: elapsed,
		IOPS:  float64(n) / elapsed.Seconds(),
		MiBps: float64(n) * float64(w.BlockSize) / elapsed.Seconds() / (1 << 20),
		P50:   pct(0.50), P99: pct(0.99), P999: pct(0.999),
		Errors: errs, QueueDepth: w.QueueDepth, BlockSize: w.BlockSize,
	}, nil
}

// Table formats results as an aligned text table.
func Table(results []Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-20s %10s %9s %10s %10s %10s\n", "workload", "IOPS", "MiB/s", "p50", "p99", "p99.9")
	for _, r := range results {
		fmt.Fprintf(&b, "%-20s %10.0f %9.1f %10s %10s %10s\n", r.Workload, r.IOPS, r.MiBps,
			r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.P999.Round(time.Microsecond))
	}
	return b.String()
}

// Fill writes the span once, sequentially with w's block size and queue
// depth, so that later reads hit allocated data.
func Fill(ctx context.Context, s *initiator.Session, lun uint64, w Workload) error {
	capy, err := s.ReadCapacity16(ctx, lun)
	if err != nil {
		return fmt.Errorf("bench: READ CAPACITY: %w", err)
	}
	bs := int64(capy.BlockSize)
	span := int64(capy.Blocks) * bs
	if w.SpanBytes > 0 && w.SpanBytes < span {
		span = w.SpanBytes
	}
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		ferr error
	)
	for q := 0; q < max(1, w.QueueDepth); q++ {
		wg.Add(1)
		go func(q int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(q), 7))
			buf := make([]byte, w.BlockSize)
			for {
				off := next.Add(int64(w.BlockSize)) - int64(w.BlockSize)
				if off >= span || ctx.Err() != nil {
					return
				}
				n := min(int64(w.BlockSize), span-off)
				for i := 0; i+8 <= int(n); i += 8 {
					binary.LittleEndian.PutUint64(buf[i:], rng.Uint64())
				}
				res, err := s.Write16(ctx, lun, uint64(off/bs), int(bs), buf[:n], false)
				if err == nil {
					err = res.Err()
				}
				if err != nil {
					mu.Lock()
					ferr = errors.Join(ferr, err)
					mu.Unlock()
					return
				}
			}
		}(q)
	}
	wg.Wait()
	if ferr != nil {
		return fmt.Errorf("bench: prefill: %w", ferr)
	}
	res, err := s.SynchronizeCache(ctx, lun)
	if err == nil {
		err = res.Err()
	}
	return err
}
