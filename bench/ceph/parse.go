package main

import (
	"strconv"
	"strings"
)

// progress is one per-second line of `rbd bench`:
//
//	SEC       OPS   OPS/SEC   BYTES/SEC
//	  4      3992   968.992   3.8 MiB/s
//
// OPS is cumulative since the start.
type progress struct {
	sec int64
	ops int64
}

// maxField bounds the numbers parseProgress accepts.
const maxField = 1 << 50

// parseProgress parses a progress line; ok is false for anything else
// (the header, the summary, noise).
func parseProgress(line string) (p progress, ok bool) {
	if len(line) > 200 {
		return p, false
	}
	f := strings.Fields(line)
	if len(f) < 4 {
		return p, false
	}
	sec, err1 := strconv.ParseInt(f[0], 10, 64)
	ops, err2 := strconv.ParseInt(f[1], 10, 64)
	rate, err3 := strconv.ParseFloat(f[2], 64)
	if err1 != nil || err2 != nil || err3 != nil || sec <= 0 || ops < 0 || sec > maxField || ops > maxField || !(rate >= 0) {
		return p, false
	}
	return progress{sec: sec, ops: ops}, true
}
