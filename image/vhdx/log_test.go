package vhdx

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/lunway/lunway/image/internal/imagetest"
)

// logWrite is one change a test log entry carries: 4 KiB of data, or
// zeroLen bytes of zeros, at a 4 KiB aligned file offset.
type logWrite struct {
	off     uint64
	data    []byte
	zeroLen uint64
}

// encodeLogEntry builds a log entry as the specification lays it out.
func encodeLogEntry(seq uint64, tail uint32, guid GUID, flushed, last uint64, writes []logWrite) []byte {
	le := binary.LittleEndian
	descBytes := (logEntryHeader + len(writes)*logDescriptor + logSector - 1) / logSector * logSector
	nData := 0
	for _, w := range writes {
		if w.data != nil {
			nData++
		}
	}
	b := make([]byte, descBytes+nData*logSector)
	copy(b, "loge")
	le.PutUint32(b[8:], uint32(len(b)))
	le.PutUint32(b[12:], tail)
	le.PutUint64(b[16:], seq)
	le.PutUint32(b[24:], uint32(len(writes)))
	copy(b[32:], guid[:])
	le.PutUint64(b[48:], flushed)
	le.PutUint64(b[56:], last)
	sec := descBytes
	for i, w := range writes {
		d := b[logEntryHeader+i*logDescriptor:]
		le.PutUint64(d[16:], w.off)
		le.PutUint64(d[24:], seq)
		if w.data == nil {
			copy(d, "zero")
			le.PutUint64(d[8:], w.zeroLen)
			continue
		}
		copy(d, "desc")
		copy(d[4:8], w.data[4092:])
		copy(d[8:16], w.data[:8])
		s := b[sec:]
		copy(s, "data")
		le.PutUint32(s[4:], uint32(seq>>32))
		copy(s[8:4092], w.data[8:4092])
		le.PutUint32(s[4092:], uint32(seq))
		sec += logSector
	}
	le.PutUint32(b[4:], crc(b, 4))
	return b
}

// TestLogReplay writes a log into a qemu-made image by hand (new data in
// one block, zeros over part of another, a BAT update that turns a third
// block into a ZERO block), then checks that our in-memory replay reads
// the same bytes as qemu-img after qemu replays the log for real
// (`qemu-img check -r all` opens the image read-write, which replays it).
func TestLogReplay(t *testing.T) {
	dir := t.TempDir()
	const size = 6 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i/4096 + i%251)
	}
	src := filepath.Join(dir, "src.raw")
	imagetest.WriteSparse(t, src, data)
	img := filepath.Join(dir, "img.vhdx")
	imagetest.QemuImg(t, "convert", "-f", "raw", "-O", "vhdx", "-o", "subformat=dynamic,block_size=1M,log_size=1M", src, img)

	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	v, err := Open(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	blockOff := func(i int) uint64 { return v.bat[i] >> 20 * mib }
	for i := 0; i < 4; i++ {
		if v.bat[i]&7 != payloadFullyPresent {
			t.Fatalf("block %d not allocated by qemu-img", i)
		}
	}
	// The BAT region's offset from the region table.
	regions, err := v.regionTable()
	if err != nil {
		t.Fatal(err)
	}
	var batOff uint64
	for _, r := range regions {
		if r.GUID == guidBAT {
			batOff = r.Offset
		}
	}
	batSector := make([]byte, logSector)
	if _, err := f.ReadAt(batSector, int64(batOff)); err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint64(batSector[2*8:], payloadZero) // block 2 → ZERO
	pattern := make([]byte, logSector)
	for i := range pattern {
		pattern[i] = 0xa5 ^ byte(i)
	}
	guid := GUID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	fsize := uint64(st.Size())
	// Two entries in one sequence, the second at the first's end.
	e1 := encodeLogEntry(7, 0, guid, fsize, fsize, []logWrite{
		{off: blockOff(0) + 8192, data: pattern},
		{off: blockOff(1), zeroLen: 8192},
	})
	e2 := encodeLogEntry(8, 0, guid, fsize, fsize, []logWrite{
		{off: batOff, data: batSector},
		{off: blockOff(3) + 4096, data: pattern},
	})
	h := v.header
	if _, err := f.WriteAt(append(e1, e2...), int64(h.LogOffset)); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{header1Offset, header2Offset} {
		b := make([]byte, headerBytes)
		if _, err := f.ReadAt(b, off); err != nil {
			t.Fatal(err)
		}
		hh, err := ParseHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		hh.LogGUID = guid
		if _, err := f.WriteAt(hh.Append(nil), off); err != nil {
			t.Fatal(err)
		}
	}

	want := append([]byte(nil), data...)
	copy(want[8192:], pattern)
	clear(want[1<<20 : 1<<20+8192])
	clear(want[2<<20 : 3<<20])
	copy(want[3<<20+4096:], pattern)

	st, _ = f.Stat()
	r, err := Open(f, st.Size())
	if err != nil {
		t.Fatalf("Open with a log: %v", err)
	}
	if r.ReplayedLogEntries() != 2 {
		t.Fatalf("replayed %d log entries, want 2", r.ReplayedLogEntries())
	}
	got := imagetest.ReadAll(t, r)
	imagetest.Equal(t, "replayed read", got, want)
	m := imagetest.MustMap(t, r)
	imagetest.CheckMap(t, r, m, got)
	if m[1].Kind.String() != "zero" || m[1].Off != 2<<20 {
		t.Fatalf("map %+v: want block 2 as a ZERO block", m)
	}

	// qemu refuses to read an image with a log read-only; qemu-img check
	// -r all replays it in place.
	imagetest.QemuImg(t, "check", "-r", "all", "-f", "vhdx", img)
	imagetest.Equal(t, "qemu after replay", imagetest.ConvertToRaw(t, img, "vhdx"), got)
}

// TestLogIgnoresForeignEntries puts a valid-looking entry of another log
// GUID in the log: nothing is replayed.
func TestLogIgnoresForeignEntries(t *testing.T) {
	log := make([]byte, 1*mib)
	copy(log, encodeLogEntry(1, 0, GUID{9}, 0, 0, []logWrite{{off: 0, zeroLen: 4096}}))
	if seq := findLogSequence(log, GUID{1}); len(seq) != 0 {
		t.Fatalf("replayed %d entries of a foreign log", len(seq))
	}
	if seq := findLogSequence(log, GUID{9}); len(seq) != 1 {
		t.Fatalf("found %d entries of the right log, want 1", len(seq))
	}
	// A corrupted byte breaks the checksum.
	log[100] ^= 1
	if seq := findLogSequence(log, GUID{9}); len(seq) != 0 {
		t.Fatalf("replayed a corrupt entry")
	}
}
