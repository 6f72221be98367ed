package imagetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/internal/testenv"
)

// RandomSparse returns size bytes of which roughly fraction (0..1) is
// random data, in runs of 1 KiB..256 KiB at unaligned offsets, the rest
// zeros. The same seed gives the same bytes.
func RandomSparse(size int64, fraction float64, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, size)
	target := int64(float64(size) * fraction)
	for filled := int64(0); filled < target; {
		n := 1024 + rng.Int64N(255<<10)
		off := rng.Int64N(size)
		n = min(n, size-off)
		for i := off; i < off+n; i += 8 {
			v := rng.Uint64()
			for j := i; j < min(i+8, off+n); j++ {
				b[j] = byte(v)
				v >>= 8
			}
		}
		filled += n
	}
	return b
}

// WriteSparse writes data to path as a sparse file: 4 KiB blocks of zeros
// become holes.
func WriteSparse(t testing.TB, path string, data []byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const bs = 4096
	for off := 0; off < len(data); off += bs {
		blk := data[off:min(off+bs, len(data))]
		if image.IsZero(blk) {
			continue
		}
		if _, err := f.WriteAt(blk, int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

// QemuImg runs qemu-img with args and returns its standard output; it
// fails the test when qemu-img fails. Without qemu-img the test is
// skipped (or failed under LUNWAY_REQUIRE_TOOLS=1).
func QemuImg(t testing.TB, args ...string) string {
	t.Helper()
	out, err := QemuImgErr(t, args...)
	if err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// QemuImgErr is QemuImg returning the error (with combined output).
func QemuImgErr(t testing.TB, args ...string) (string, error) {
	t.Helper()
	bin := testenv.NeedCommand(t, "qemu-img", "qemu-utils")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

// QemuExtent is one entry of `qemu-img map --output=json`.
type QemuExtent struct {
	Start  int64 `json:"start"`
	Length int64 `json:"length"`
	Depth  int   `json:"depth"`
	Zero   bool  `json:"zero"`
	Data   bool  `json:"data"`
}

// QemuMap returns qemu-img's allocation map of the image at path.
func QemuMap(t testing.TB, path string, format string) []QemuExtent {
	t.Helper()
	args := []string{"map", "--output=json"}
	if format != "" {
		args = append(args, "-f", format)
	}
	out := QemuImg(t, append(args, path)...)
	var m []QemuExtent
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("qemu-img map output: %v\n%s", err, out)
	}
	return m
}

// DataRanges reduces a qemu map to the merged ranges holding data
// (data true, zero false).
func DataRanges(m []QemuExtent) [][2]int64 {
	var out [][2]int64
	for _, e := range m {
		if !e.Data || e.Zero {
			continue
		}
		if k := len(out) - 1; k >= 0 && out[k][1] == e.Start {
			out[k][1] += e.Length
			continue
		}
		out = append(out, [2]int64{e.Start, e.Start + e.Length})
	}
	return out
}

// ExtentDataRanges reduces our map to the merged ranges of kind Data.
func ExtentDataRanges(m []image.Extent) [][2]int64 {
	var out [][2]int64
	for _, e := range m {
		if e.Kind != image.Data {
			continue
		}
		if k := len(out) - 1; k >= 0 && out[k][1] == e.Off {
			out[k][1] += e.Len
			continue
		}
		out = append(out, [2]int64{e.Off, e.End()})
	}
	return out
}

// DataBytes sums the lengths of ranges.
func DataBytes(r [][2]int64) int64 {
	var n int64
	for _, x := range r {
		n += x[1] - x[0]
	}
	return n
}

// ReadAll reads the whole virtual disk of r in chunks of 1 MiB + 512
// bytes (so reads straddle cluster boundaries).
func ReadAll(t testing.TB, r image.Reader) []byte {
	t.Helper()
	out := make([]byte, r.Size())
	const chunk = 1<<20 + 512
	for off := int64(0); off < r.Size(); off += chunk {
		end := min(off+chunk, r.Size())
		if n, err := r.ReadAt(out[off:end], off); err != nil || n != int(end-off) {
			t.Fatalf("ReadAt(%d, %d): n=%d err=%v", off, end-off, n, err)
		}
	}
	return out
}

// CheckMap verifies that m covers [0, r.Size()) in order and that every
// range it calls a hole or zero reads as zeros from r.
func CheckMap(t testing.TB, r image.Reader, m []image.Extent, data []byte) {
	t.Helper()
	pos := int64(0)
	for _, e := range m {
		if e.Off != pos || e.Len <= 0 {
			t.Fatalf("map extent %+v: want start %d and positive length", e, pos)
		}
		if e.Kind != image.Data && !image.IsZero(data[e.Off:e.End()]) {
			t.Fatalf("map extent %+v is %v but holds data", e, e.Kind)
		}
		pos = e.End()
	}
	if pos != r.Size() {
		t.Fatalf("map covers %d bytes, size %d", pos, r.Size())
	}
}

// MustMap returns r's full map.
func MustMap(t testing.TB, r image.Reader) []image.Extent {
	t.Helper()
	m, err := r.Map(context.Background(), 0, r.Size())
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	return m
}

// Equal fails the test at the first differing byte.
func Equal(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d bytes, want %d", what, len(got), len(want))
	}
	if bytes.Equal(got, want) {
		return
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: first difference at byte %d (0x%x): got %#02x want %#02x", what, i, i, got[i], want[i])
		}
	}
}

// ConvertToRaw has qemu-img convert the image at path to raw and returns
// the bytes.
func ConvertToRaw(t testing.TB, path, format string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ref.raw")
	args := []string{"convert"}
	if format != "" {
		args = append(args, "-f", format)
	}
	QemuImg(t, append(args, "-O", "raw", path, out)...)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Sprint formats ranges for failure messages.
func Sprint(r [][2]int64) string {
	var sb strings.Builder
	for i, x := range r {
		if i == 20 {
			fmt.Fprintf(&sb, " ... (%d more)", len(r)-i)
			break
		}
		fmt.Fprintf(&sb, "[%d,%d) ", x[0], x[1])
	}
	return sb.String()
}

// RunTool runs an external program (skipping or failing the test when it
// is missing) and fails the test when it fails.
func RunTool(t testing.TB, name, pkg string, args ...string) string {
	t.Helper()
	bin := testenv.NeedCommand(t, name, pkg)
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// AllocatedBytes returns the bytes the file system allocated to path.
func AllocatedBytes(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		t.Skip("no block counts on this platform")
	}
	return sys.Blocks * 512
}
