package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
)

type writerSyncer struct {
	mu sync.Mutex
	io.Writer
}

func (w *writerSyncer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.Writer.Write(p)
}

func (*writerSyncer) Sync() error { return nil }

// TestLogging: JSON lines with level, message and fields; the level
// filters; repeats are sampled on the main logger and never on the audit
// logger.
func TestLogging(t *testing.T) {
	var buf bytes.Buffer
	log, audit, sync, err := newLoggerTo(&writerSyncer{Writer: &buf}, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hidden at info")
	log.With("target", "iqn.2026-11.dev.lunway:t", "lun", 3).Info("LUN ready", "size", "1GiB")
	const n = 500
	for i := 0; i < n; i++ {
		log.Warn("login refused", "initiator", "iqn.2026-01.com.example:x", "try", i)
		audit.Info("configuration changed", "change", "add LUN", "n", i)
	}
	sync()
	counts := map[string]int{}
	sc := bufio.NewScanner(&buf)
	var first map[string]any
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %q", sc.Text())
		}
		if first == nil {
			first = m
		}
		counts[m["msg"].(string)]++
	}
	if first["msg"] != "LUN ready" || first["level"] != "info" || first["target"] != "iqn.2026-11.dev.lunway:t" ||
		first["lun"] != float64(3) || first["size"] != "1GiB" || first["ts"] == nil || first["logger"] != "lunway" {
		t.Errorf("first line %v", first)
	}
	if counts["hidden at info"] != 0 {
		t.Error("debug line logged at info")
	}
	// Within one second: the first 10, then every 100th (110th, 210th...);
	// twice that if a stalled machine spread the loop over two windows.
	if got, want := counts["login refused"], sampleFirst+(n-sampleFirst)/sampleThereafter; got < want || got > 2*want {
		t.Errorf("sampled repeats: %d lines, want %d", got, want)
	}
	if counts["configuration changed"] != n {
		t.Errorf("audit lines: %d, want %d (never sampled)", counts["configuration changed"], n)
	}

	if _, _, _, err := newLoggerTo(&writerSyncer{Writer: io.Discard}, "loud", "json"); err == nil {
		t.Error("bad level accepted")
	}
	if _, _, _, err := newLoggerTo(&writerSyncer{Writer: io.Discard}, "info", "xml"); err == nil {
		t.Error("bad format accepted")
	}
	buf.Reset()
	log, _, _, _ = newLoggerTo(&writerSyncer{Writer: &buf}, "warn", "console")
	log.Info("quiet")
	log.Error("loud", "err", "boom")
	if out := buf.String(); strings.Contains(out, "quiet") || !strings.Contains(out, "ERROR") || !strings.Contains(out, `"err": "boom"`) {
		t.Errorf("console output %q", out)
	}
}
