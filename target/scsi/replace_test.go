package scsi

import (
	"bytes"
	"errors"
	"testing"
)

func TestReplaceLU(t *testing.T) {
	f := newFixture(t, nil, nil, nil)
	n := nexus("iqn.2026-01.io.lunway:init", 1, 1)
	f.ready(n)
	// The replacement has other contents; it must be served at once, with
	// a unit attention first, and the LUN must never be missing.
	dev := newMem(t, testBlocks, nil)
	data := pattern(512, 7)
	if err := dev.WriteAt(t.Context(), data, 0, 0); err != nil {
		t.Fatal(err)
	}
	lu, err := NewLU(LUOptions{Device: dev, SerialNumber: "SN0002"})
	if err != nil {
		t.Fatal(err)
	}
	old, err := f.tg.ReplaceLU(0, lu)
	if err != nil || old != f.lu {
		t.Fatalf("ReplaceLU = %v, %v", old, err)
	}
	if got := f.tg.LU(0); got != lu {
		t.Fatalf("LU(0) is not the replacement")
	}
	read10 := []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0}
	res := f.run(n, 0, read10, nil)
	if res.Status != StatusCheckCondition {
		t.Fatalf("first command after replace: status %#x, want a unit attention", res.Status)
	}
	res = f.run(n, 0, read10, nil)
	good(t, res)
	if !bytes.Equal(res.Data, data) {
		t.Fatalf("read the old LU's data after replace")
	}
	if _, err := f.tg.ReplaceLU(5, lu); !errors.Is(err, ErrNoSuchLUN) {
		t.Fatalf("replace of a missing LUN: %v", err)
	}
	// An LU attached elsewhere cannot replace.
	if _, err := f.tg.ReplaceLU(0, lu); !errors.Is(err, ErrLUAttached) {
		t.Fatalf("replace with an attached LU: %v", err)
	}
}
