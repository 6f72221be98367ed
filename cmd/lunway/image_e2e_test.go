package main

// End-to-end tests of lunway import, export and volume through the real
// binary, with images made and checked by qemu-img.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/iscsi"
	"github.com/lunway/lunway/internal/testenv"
)

const imgIQN = "iqn.2026-11.dev.lunway:img"

// imgConfig serves a 24 MiB file LUN 0, a 24 MiB blockmap LUN 1 and a
// 2 GiB blockmap LUN 2 (for the large sparse case).
const imgConfig = `
data_dir: {{DATA}}
log: {level: warn}
portal_groups: [{tag: 1, listen: ["127.0.0.1:{{PORT0}}"]}]
targets:
  - name: ` + imgIQN + `
    luns:
      - {lun: 0, size: 24MiB, backend: {type: file, path: lun0.img}}
      - {lun: 1, size: 24MiB, backend: {type: blockmap, volume: vol1, store: {type: dir, path: store}}}
      - {lun: 2, size: 2GiB, backend: {type: blockmap, volume: vol2, store: {type: dir, path: store}}}
`

// result is one run of the lunway binary.
type result struct {
	stdout, stderr string
	code           int
}

// lw runs lunway with args and returns its output and exit status.
func lw(t testing.TB, args ...string) result {
	t.Helper()
	cmd := exec.Command(lunwayBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("lunway %s: %v", strings.Join(args, " "), err)
	}
	if strings.Contains(r.stderr, "DATA RACE") {
		t.Fatalf("race in lunway %s:\n%s", strings.Join(args, " "), r.stderr)
	}
	return r
}

// lwOK runs lunway and fails the test unless it exits 0.
func lwOK(t testing.TB, args ...string) string {
	t.Helper()
	r := lw(t, args...)
	if r.code != 0 {
		t.Fatalf("lunway %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// lwFail runs lunway, expects exit status code with one line on stderr
// that contains every want, and returns that line.
func lwFail(t testing.TB, code int, want []string, args ...string) string {
	t.Helper()
	r := lw(t, args...)
	msg := strings.TrimSpace(r.stderr)
	if r.code != code {
		t.Fatalf("lunway %s: exit %d, want %d; stderr: %s", strings.Join(args, " "), r.code, code, msg)
	}
	if strings.Count(msg, "\n") != 0 || !strings.HasPrefix(msg, "lunway: ") {
		t.Fatalf("lunway %s: stderr is not one line starting with \"lunway: \":\n%s", strings.Join(args, " "), msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Fatalf("lunway %s: stderr %q does not contain %q", strings.Join(args, " "), msg, w)
		}
	}
	return msg
}

// region is a run of the test disk filled with random data.
type region struct{ off, n int64 }

// writeSparseRaw writes a sparse raw file of size bytes with random data
// in the regions, and explicit zeros (allocated) in zeros.
func writeSparseRaw(t testing.TB, path string, size int64, data, zeros []region, seed uint64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(seed, 9))
	for _, r := range data {
		buf := make([]byte, r.n)
		for i := 0; i+8 <= len(buf); i += 8 {
			binary.LittleEndian.PutUint64(buf[i:], rng.Uint64()|1)
		}
		if _, err := f.WriteAt(buf, r.off); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range zeros {
		if _, err := f.WriteAt(make([]byte, r.n), r.off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// allocated returns the bytes a file occupies on disk.
func allocated(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Blocks * 512
}

// qemuImage is a source image format as qemu-img makes it.
type qemuImage struct {
	name   string // test name and file suffix
	format string // qemu-img -O
	opts   string // qemu-img -o
}

// shortFormats are the formats tested in -short mode (one of each family).
var shortFormats = map[string]bool{"raw": true, "qcow2": true, "vmdk-stream": true, "vpc": true, "vhdx": true, "vhd": true}

// skipInShort skips the cases -short mode leaves out.
func skipInShort(t *testing.T, name string) {
	if testing.Short() && !shortFormats[name] {
		t.Skip("a format of a family tested in -short mode")
	}
}

var qemuImages = []qemuImage{
	{"raw", "raw", ""},
	{"qcow2", "qcow2", ""},
	{"qcow2-v2", "qcow2", "compat=0.10,cluster_size=4096"},
	{"vmdk", "vmdk", "subformat=monolithicSparse"},
	{"vmdk-stream", "vmdk", "subformat=streamOptimized"},
	{"vmdk-flat", "vmdk", "subformat=monolithicFlat"},
	{"vpc", "vpc", "subformat=dynamic,force_size=on"},
	{"vpc-fixed", "vpc", "subformat=fixed,force_size=on"},
	{"vhdx", "vhdx", "subformat=dynamic"},
	{"vhdx-fixed", "vhdx", "subformat=fixed"},
}

// makeImage converts src (raw) into a qemu-made image in dir.
func makeImage(t testing.TB, dir, src string, q qemuImage) string {
	t.Helper()
	p := filepath.Join(dir, "src-"+q.name+"."+q.format)
	args := []string{"convert", "-f", "raw", "-O", q.format}
	if q.opts != "" {
		args = append(args, "-o", q.opts)
	}
	run(t, "qemu-img", append(args, src, p)...)
	return p
}

// identical runs qemu-img compare and fails unless the images are equal.
func identical(t testing.TB, fa, a, fb, b string) {
	t.Helper()
	out, err := exec.Command("qemu-img", "compare", "-f", fa, "-F", fb, a, b).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "identical") {
		t.Fatalf("qemu-img compare %s %s: %v\n%s", a, b, err, out)
	}
}

// The test disk: 24 MiB, about 4 MiB of data in runs of various
// alignments, and an explicitly written zero MiB that must stay a hole.
const diskSize = 24 << 20

var (
	diskData = []region{{0, 1 << 20}, {5 << 20, 3 << 20}, {17<<20 + 4096, 64 << 10}, {diskSize - 4096, 4096}}
	diskZero = []region{{12 << 20, 1 << 20}}
	// maxAlloc bounds what a sparse copy of the disk may allocate: the
	// data, rounded out to 64 KiB, plus slack for metadata.
	maxAlloc = int64(5 << 20)
)

// volumeUsed reads a volume's mapped bytes with `lunway volume info -o json`.
func volumeUsed(t testing.TB, store, name string) int64 {
	t.Helper()
	var r struct {
		UsedBytes int64 `json:"used_bytes"`
		SizeBytes int64 `json:"size_bytes"`
	}
	out := lwOK(t, "volume", "info", name, "--store", store, "-o", "json")
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("volume info: %v\n%s", err, out)
	}
	return r.UsedBytes
}

// lunMapped sums the mapped bytes of a live LUN (GET LBA STATUS).
func lunMapped(t testing.TB, url string) int64 {
	t.Helper()
	tg, err := iscsi.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d, err := iscsi.Open(ctx, tg, &iscsi.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	as, ok := d.(blockdev.AllocationStatuser)
	if !ok {
		t.Fatalf("%s does not report allocation", url)
	}
	var n int64
	size := d.Info().SizeBytes
	for pos := int64(0); pos < size; {
		exts, err := as.AllocationStatus(ctx, pos, size-pos)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range exts {
			if e.State == blockdev.Mapped {
				n += e.Len
			}
			pos = e.Off + e.Len
		}
	}
	return n
}

// scribble fills a LUN's backing file with garbage so that an import must
// clear what the image does not hold.
func scribble(t testing.TB, path string, size int64) {
	t.Helper()
	writeSparseRaw(t, path, size, []region{{0, size}}, nil, 77)
}

// TestImportExportFormats imports a qemu-img-made image of every format
// onto a file LUN offline (through the daemon's configuration), a
// blockmap volume offline and a live LUN of a running daemon, compares
// each with the source and checks that holes stayed holes; then exports
// the live LUN in every output format and has qemu-img check and compare
// the results.
func TestImportExportFormats(t *testing.T) {
	testenv.NeedQEMU(t, "qemu-img")
	d := newDaemon(t, imgConfig, 1)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	writeSparseRaw(t, src, diskSize, diskData, diskZero, 1)
	images := map[string]string{}
	for _, q := range qemuImages {
		images[q.name] = makeImage(t, dir, src, q)
	}
	cfg := []string{"--config", d.cfgPath}
	lun0 := filepath.Join(d.dir, "lun0.img")
	volStore := filepath.Join(dir, "volumes")
	if err := os.Mkdir(volStore, 0o755); err != nil {
		t.Fatal(err)
	}

	t.Run("offline", func(t *testing.T) {
		for _, q := range qemuImages {
			t.Run(q.name, func(t *testing.T) {
				skipInShort(t, q.name)
				img := images[q.name]
				// (a) the file LUN of the configuration, over garbage.
				if _, err := os.Stat(lun0); err == nil {
					scribble(t, lun0, diskSize)
				}
				out := lwOK(t, "import", img, "lun:"+imgIQN+"/0", "--config", d.cfgPath)
				if !strings.Contains(out, "imported") {
					t.Fatalf("no summary: %q", out)
				}
				identical(t, q.format, img, "raw", lun0)
				if a := allocated(t, lun0); a > maxAlloc {
					t.Fatalf("LUN file allocates %d bytes after the import; holes were written", a)
				}
				// (b) a new volume in a directory store.
				vol := "vol-" + q.name
				lwOK(t, "import", "-q", "--verify", img, "volume:"+filepath.Join(volStore, vol))
				back := filepath.Join(t.TempDir(), "back.raw")
				lwOK(t, "export", "-q", "volume:"+filepath.Join(volStore, vol), back)
				identical(t, "raw", back, "raw", src)
				if u := volumeUsed(t, volStore, vol); u > maxAlloc || u < 4<<20 {
					t.Fatalf("volume maps %d bytes; want the ~4 MiB of data", u)
				}
			})
		}
	})

	d.start()
	t.Run("live", func(t *testing.T) {
		url := d.url(d.ports[0], imgIQN, 1)
		for _, q := range qemuImages {
			t.Run(q.name, func(t *testing.T) {
				skipInShort(t, q.name)
				img := images[q.name]
				lwOK(t, "import", "-q", img, url)
				identical(t, q.format, img, "raw", url)
				if m := lunMapped(t, url); m > maxAlloc || m < 4<<20 {
					t.Fatalf("LUN maps %d bytes after the import; want the ~4 MiB of data", m)
				}
			})
		}
		// Offline access to what the daemon serves is refused, clearly.
		lwFail(t, 1, []string{"running lunway daemon", "iscsi://"}, append([]string{"import", images["qcow2"], "lun:" + imgIQN + "/0"}, cfg...)...)
		lwFail(t, 1, []string{"locked", "iscsi://"}, "import", images["qcow2"], "volume:"+filepath.Join(d.dir, "store", "vol1"))
		lwFail(t, 1, []string{"locked"}, "volume", "info", "vol1", "--store", filepath.Join(d.dir, "store"))
	})

	t.Run("export", func(t *testing.T) {
		url := d.url(d.ports[0], imgIQN, 1)
		for _, f := range []struct{ name, qemu string }{
			{"raw", "raw"}, {"qcow2", "qcow2"}, {"vmdk", "vmdk"}, {"vmdk-stream", "vmdk"}, {"vmdk-flat", "vmdk"},
			{"vhd", "vpc"}, {"vhd-fixed", "vpc"}, {"vhdx", "vhdx"}, {"vhdx-fixed", "vhdx"},
		} {
			t.Run(f.name, func(t *testing.T) {
				skipInShort(t, f.name)
				out := filepath.Join(t.TempDir(), "out."+f.qemu)
				lwOK(t, "export", "-q", "--verify", url, out, "--format", f.name)
				if f.qemu != "raw" && f.qemu != "vpc" { // qemu-img checks these formats only
					run(t, "qemu-img", "check", "-f", f.qemu, out)
				}
				identical(t, f.qemu, out, "raw", src)
				// Sparse formats allocate no more than qemu-img's own
				// image of the same disk (metadata included), give or take.
				if q, ok := map[string]string{"raw": "raw", "qcow2": "qcow2", "vmdk": "vmdk", "vhd": "vpc", "vhdx": "vhdx"}[f.name]; ok {
					limit := max(allocated(t, images[q])*5/4, maxAlloc)
					if q == "vhdx" {
						// image/vhdx writes its 4 MiB of header, log,
						// metadata and BAT regions whole (qemu-img leaves
						// their unused parts sparse); data blocks are sparse.
						limit += 3 << 20
					}
					if a := allocated(t, out); a > limit {
						t.Fatalf("%s export allocates %d bytes, qemu-img's image %d: holes were written", f.name, a, allocated(t, images[q]))
					}
				}
			})
		}
		// To standard output, in a sequential format.
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(lunwayBin, "export", url, "-", "--format", "vmdk-stream")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("export to stdout: %v %s", err, stderr.String())
		}
		piped := filepath.Join(t.TempDir(), "piped.vmdk")
		if err := os.WriteFile(piped, stdout.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		identical(t, "vmdk", piped, "raw", src)
	})

	t.Run("large-sparse", func(t *testing.T) {
		// 2 GiB virtual, 8 MiB of data: holes must cost nothing either way.
		big := filepath.Join(dir, "big.raw")
		writeSparseRaw(t, big, 2<<30, []region{{0, 4 << 20}, {1<<30 + 512, 4 << 20}}, nil, 3)
		img := makeImage(t, dir, big, qemuImage{"big", "qcow2", ""})
		url := d.url(d.ports[0], imgIQN, 2)
		start := time.Now()
		out := lwOK(t, "import", img, url)
		t.Logf("%s (%v)", strings.TrimSpace(out), time.Since(start))
		identical(t, "qcow2", img, "raw", url)
		if m := lunMapped(t, url); m > 9<<20 {
			t.Fatalf("LUN maps %d bytes for 8 MiB of data", m)
		}
		exp := filepath.Join(t.TempDir(), "big.qcow2")
		lwOK(t, "export", "-q", url, exp)
		identical(t, "qcow2", exp, "raw", big)
		if a := allocated(t, exp); a > 12<<20 {
			t.Fatalf("2 GiB export with 8 MiB of data allocates %d bytes", a)
		}
	})
}

// TestImportVerifyMismatch: a destination that changes behind the
// import's back is reported by --verify as a one-line error with the
// offset of the difference.
func TestImportVerifyMismatch(t *testing.T) {
	testenv.NeedQEMU(t, "qemu-img")
	d := newDaemon(t, imgConfig, 1)
	d.start()
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	writeSparseRaw(t, src, diskSize, diskData, nil, 5)
	img := makeImage(t, dir, src, qemuImage{"q", "qcow2", ""})
	// Scribble into the LUN's backing file, in a hole of the image, for as
	// long as the import runs.
	lun0 := filepath.Join(d.dir, "lun0.img")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f, err := os.OpenFile(lun0, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		junk := bytes.Repeat([]byte{0xee}, 4096)
		for {
			select {
			case <-stop:
				return
			default:
			}
			f.WriteAt(junk, 20<<20)
			time.Sleep(time.Millisecond)
		}
	}()
	msg := lwFail(t, 1, []string{"verification failed", "byte offset"}, "import", "--verify", "-q", img, d.url(d.ports[0], imgIQN, 0))
	close(stop)
	wg.Wait()
	var off int64
	if _, err := fmt.Sscanf(msg[strings.LastIndex(msg, "offset ")+len("offset "):], "%d", &off); err != nil || off < 20<<20 || off >= 20<<20+4096 {
		t.Fatalf("mismatch offset %d (%v) is not in the scribbled block: %s", off, err, msg)
	}
}

// TestImportResume kills an import into a volume and into a file half way
// (SIGKILL, as a crash), checks the volume, and finishes with --resume:
// the result is exact and the data already in place is not written again.
func TestImportResume(t *testing.T) {
	testenv.NeedQEMU(t, "qemu-img")
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	const size = 192 << 20
	writeSparseRaw(t, src, size, []region{{0, 160 << 20}}, nil, 11)
	img := makeImage(t, dir, src, qemuImage{"q", "qcow2", ""})
	store := filepath.Join(dir, "store")
	if err := os.Mkdir(store, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, dest string
		progress   func() int64 // bytes in place so far
	}{
		{"volume", "volume:" + filepath.Join(store, "vol"), func() int64 { return dirBytes(filepath.Join(store)) }},
		{"file", filepath.Join(dir, "lun.img"), func() int64 {
			if _, err := os.Stat(filepath.Join(dir, "lun.img")); err != nil {
				return 0
			}
			return allocated(t, filepath.Join(dir, "lun.img"))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(lunwayBin, "import", "-q", "--concurrency", "1", img, c.dest)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			deadline := time.Now().Add(60 * time.Second)
			for c.progress() < 24<<20 {
				select {
				case err := <-done:
					t.Fatalf("the import finished (%v) before it could be killed; stderr: %s", err, stderr.String())
				default:
				}
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					t.Fatalf("no progress; stderr: %s", stderr.String())
				}
				time.Sleep(5 * time.Millisecond)
			}
			cmd.Process.Kill()
			<-done
			if c.name == "volume" {
				out := lwOK(t, "volume", "check", "vol", "--store", store)
				t.Logf("after the kill: %s", strings.TrimSpace(out))
			}
			out := lwOK(t, "import", "--resume", img, c.dest)
			t.Log(strings.TrimSpace(out))
			if !strings.Contains(out, "already in place") {
				t.Fatalf("the resumed import rewrote everything: %s", out)
			}
			back := filepath.Join(t.TempDir(), "back.raw")
			lwOK(t, "export", "-q", c.dest, back)
			identical(t, "raw", back, "raw", src)
		})
	}
}

// dirBytes sums the sizes of the files under dir.
func dirBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// TestImportBadInput: missing files, corrupt images, destinations too
// small or of the wrong kind, and bad arguments give one clear line and
// the documented exit status, and change nothing.
func TestImportBadInput(t *testing.T) {
	testenv.NeedQEMU(t, "qemu-img")
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	writeSparseRaw(t, src, diskSize, diskData, nil, 2)
	img := makeImage(t, dir, src, qemuImage{"q", "qcow2", ""})
	corrupt := filepath.Join(dir, "corrupt.qcow2")
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint64(data[40:], 1<<50) // l1_table_offset far beyond the file
	if err := os.WriteFile(corrupt, data, 0o644); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(dir, "small.img")
	if err := os.WriteFile(small, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "store")
	os.Mkdir(store, 0o755)
	lwOK(t, "volume", "create", "tiny", "--size", "1MiB", "--store", store)

	lwFail(t, 2, []string{"no such file"}, "import", filepath.Join(dir, "missing.qcow2"), filepath.Join(dir, "x.img"))
	lwFail(t, 1, []string{"corrupt"}, "import", corrupt, filepath.Join(dir, "y.img"))
	lwFail(t, 2, []string{"smaller than the image", "--grow"}, "import", img, small)
	lwFail(t, 2, []string{"smaller than the image", "--grow"}, "import", img, "tiny", "--store", store)
	lwFail(t, 2, []string{"holds a qcow2 image"}, "import", img, img)
	lwFail(t, 2, []string{"bad URL"}, "import", img, "iscsi://127.0.0.1/iqn.2026-11.dev.lunway:x")
	lwFail(t, 2, []string{"volume:STORE-DIR/NAME"}, "import", img, "volume:"+dir+"/bad/name!")
	lwFail(t, 2, []string{"store"}, "import", img, "volume:"+filepath.Join(dir, "nostore", "v"))
	lwFail(t, 2, []string{"--format"}, "export", src, filepath.Join(dir, "out.bin"))
	lwFail(t, 2, []string{"--format \"qcow3\""}, "export", src, filepath.Join(dir, "out.bin"), "--format", "qcow3")
	lwFail(t, 2, []string{"standard output"}, "export", src, "-", "--format", "qcow2")
	lwFail(t, 2, []string{"--resume", "raw"}, "export", "--resume", src, filepath.Join(dir, "o.qcow2"))
	lwFail(t, 1, []string{"connection refused"}, "import", img, fmt.Sprintf("iscsi://127.0.0.1:%d/iqn.2026-11.dev.lunway:x/0", freePort(t)))
	if a := allocated(t, small); a > 1<<20 {
		t.Fatalf("the refused import wrote to the destination")
	}
	for _, p := range []string{filepath.Join(dir, "x.img")} {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("%s was created by a refused import", p)
		}
	}
	// --grow makes room, for a file and for a volume.
	lwOK(t, "import", "-q", "--grow", img, small)
	identical(t, "qcow2", img, "raw", small)
	lwOK(t, "import", "-q", "--grow", img, "tiny", "--store", store)
	back := filepath.Join(dir, "back.raw")
	lwOK(t, "export", "-q", "tiny", back, "--store", store)
	identical(t, "raw", back, "raw", src)
}

// TestVolumeCommands runs the offline volume tools end to end, including
// check finding a segment damaged on purpose.
func TestVolumeCommands(t *testing.T) {
	testenv.NeedQEMU(t, "qemu-img")
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	os.Mkdir(store, 0o755)
	st := []string{"--store", store}
	out := lwOK(t, append([]string{"volume", "create", "base", "--size", "32MiB"}, st...)...)
	if !strings.Contains(out, "created volume base") {
		t.Fatalf("create: %q", out)
	}
	lwFail(t, 2, []string{"exists"}, append([]string{"volume", "create", "base", "--size", "32MiB"}, st...)...)
	lwFail(t, 2, []string{"--size"}, append([]string{"volume", "create", "other"}, st...)...)
	src := filepath.Join(dir, "src.raw")
	writeSparseRaw(t, src, 32<<20, []region{{0, 2 << 20}, {30 << 20, 2 << 20}}, nil, 4)
	lwOK(t, "import", "-q", src, "volume:"+filepath.Join(store, "base"))
	lwOK(t, append([]string{"volume", "snapshot", "base", "s1"}, st...)...)
	lwFail(t, 2, []string{"exists"}, append([]string{"volume", "snapshot", "base", "s1"}, st...)...)
	lwOK(t, append([]string{"volume", "clone", "base@s1", "child"}, st...)...)
	lwFail(t, 2, []string{"not found"}, append([]string{"volume", "clone", "base@nosuch", "child2"}, st...)...)

	var info struct {
		Name          string `json:"name"`
		SizeBytes     int64  `json:"size_bytes"`
		UsedBytes     int64  `json:"used_bytes"`
		FormatVersion int    `json:"format_version"`
		Segments      int    `json:"segments"`
		Snapshots     []struct {
			Name string `json:"name"`
		} `json:"snapshots"`
		Clones             []string `json:"clones"`
		WriteAmplification float64  `json:"write_amplification"`
	}
	if err := json.Unmarshal([]byte(lwOK(t, append([]string{"volume", "info", "base", "-o", "json"}, st...)...)), &info); err != nil {
		t.Fatal(err)
	}
	if info.SizeBytes != 32<<20 || info.UsedBytes != 4<<20 || info.FormatVersion != 1 || info.Segments == 0 ||
		len(info.Snapshots) != 1 || info.Snapshots[0].Name != "s1" || len(info.Clones) != 1 || info.Clones[0] != "child" ||
		info.WriteAmplification < 1 {
		t.Fatalf("volume info: %+v", info)
	}
	text := lwOK(t, append([]string{"volume", "info", "child"}, st...)...)
	for _, w := range []string{"origin", "base@s1", "format", "version 1", "write amplification"} {
		if !strings.Contains(text, w) {
			t.Fatalf("volume info text lacks %q:\n%s", w, text)
		}
	}
	var list []struct {
		Name      string `json:"name"`
		SizeBytes int64  `json:"size_bytes"`
		Origin    string `json:"origin"`
	}
	if err := json.Unmarshal([]byte(lwOK(t, "volume", "list", store, "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "base" || list[1].Name != "child" || list[1].Origin != "base@s1" {
		t.Fatalf("volume list: %+v", list)
	}
	// Resize: grow, then shrinking over data is refused, shrinking over
	// nothing works.
	lwOK(t, append([]string{"volume", "resize", "child", "--size", "64MiB"}, st...)...)
	lwFail(t, 1, []string{"cannot shrink"}, append([]string{"volume", "resize", "base", "--size", "16MiB"}, st...)...)
	lwOK(t, append([]string{"volume", "resize", "child", "--size", "48MiB"}, st...)...)
	// Delete: needs --yes, refused while clones exist.
	lwFail(t, 2, []string{"--yes"}, append([]string{"volume", "delete", "base"}, st...)...)
	lwFail(t, 1, []string{"clones"}, append([]string{"volume", "delete", "base", "--yes"}, st...)...)
	lwFail(t, 1, []string{"clones"}, append([]string{"volume", "snapshot", "base", "s1", "--delete"}, st...)...)
	lwOK(t, append([]string{"volume", "delete", "child", "--yes"}, st...)...)
	lwOK(t, append([]string{"volume", "snapshot", "base", "s1", "--delete"}, st...)...)

	// Check: fine, then a damaged segment is found and named.
	out = lwOK(t, append([]string{"volume", "check", "base"}, st...)...)
	if !strings.Contains(out, "ok") {
		t.Fatalf("check: %q", out)
	}
	seg := largestFile(t, filepath.Join(store, "base@", "seg@"))
	f, err := os.OpenFile(seg, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st2, _ := f.Stat()
	if _, err := f.WriteAt(bytes.Repeat([]byte{0x5a}, 64), st2.Size()/2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	name := "base/seg/" + filepath.Base(seg)
	lwFail(t, 1, []string{"damaged", name}, append([]string{"volume", "check", "base"}, st...)...)
	lwFail(t, 1, []string{"damaged", name}, "check", "volume:"+filepath.Join(store, "base"))
	lwOK(t, append([]string{"volume", "delete", "base", "--yes"}, st...)...)
	if out := lwOK(t, "volume", "list", "--store", store); strings.Contains(out, "base") {
		t.Fatalf("list after delete: %s", out)
	}
	lwFail(t, 2, []string{"no volume"}, append([]string{"volume", "info", "base"}, st...)...)
	lwFail(t, 2, []string{"subcommand"}, "volume")
}

// largestFile returns the largest file under dir.
func largestFile(t testing.TB, dir string) string {
	t.Helper()
	var best string
	var size int64 = -1
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() > size {
			best, size = p, fi.Size()
		}
		return nil
	})
	if best == "" {
		t.Fatalf("no file under %s", dir)
	}
	return best
}
