package raw_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/internal/imagetest"
	"github.com/lunway/lunway/image/raw"
)

// TestMapHoles checks that the map of a sparse file comes from the file
// system and agrees with qemu-img map.
func TestMapHoles(t *testing.T) {
	dir := t.TempDir()
	data := imagetest.RandomSparse(8<<20, 0.2, 1)
	p := filepath.Join(dir, "a.raw")
	imagetest.WriteSparse(t, p, data)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := raw.Open(f, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	m := imagetest.MustMap(t, r)
	imagetest.CheckMap(t, r, m, data)
	ours := imagetest.ExtentDataRanges(m)
	if imagetest.DataBytes(ours) >= int64(len(data)) {
		t.Skip("file system reports no holes")
	}
	theirs := imagetest.DataRanges(imagetest.QemuMap(t, p, "raw"))
	if imagetest.Sprint(ours) != imagetest.Sprint(theirs) {
		t.Fatalf("ours %s\nqemu %s", imagetest.Sprint(ours), imagetest.Sprint(theirs))
	}
	// A partial map starting inside a hole.
	m2, err := r.Map(context.Background(), 12345, 3<<20)
	if err != nil || m2[0].Off != 12345 {
		t.Fatalf("partial map %v %v", m2, err)
	}
	imagetest.Equal(t, "read", imagetest.ReadAll(t, r), data)
}

// TestWriter writes to a file (holes by seeking) and to a pipe (zeros).
func TestWriter(t *testing.T) {
	data := imagetest.RandomSparse(3<<20+512, 0.3, 2)
	write := func(w io.Writer) {
		rw, err := raw.NewWriter(w, int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(data); off += 70000 {
			p := data[off:min(off+70000, len(data))]
			if image.IsZero(p) {
				continue
			}
			if _, err := rw.WriteAt(p, int64(off)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := rw.WriteAt([]byte{1}, 0); !errors.Is(err, image.ErrOrder) {
			t.Fatalf("backwards write: %v", err)
		}
		if err := rw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), "out.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	write(f)
	f.Close()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	imagetest.Equal(t, "file", got, data)
	var buf bytes.Buffer
	write(&buf)
	imagetest.Equal(t, "pipe", buf.Bytes(), data)
}
