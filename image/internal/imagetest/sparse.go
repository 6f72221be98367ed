package imagetest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/lunway/lunway/image"
)

// Packed files let fuzzers work on images that are megabytes long but
// mostly zeros (a VHDX is at least 4 MiB): a packed file is
//
//	size u32 (KiB)
//	{ offset u32 (bytes), length u16, data } ...
//
// describing the non-zero pieces over a file of zeros. Unpack caps the
// size so that a fuzzed image cannot make readers allocate much.
const (
	maxPackedFile = 64 << 20
	packPiece     = 512
)

// Pack encodes file as a packed file.
func Pack(file []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32((len(file)+1023)/1024))
	for off := 0; off < len(file); off += packPiece {
		p := file[off:min(off+packPiece, len(file))]
		if image.IsZero(p) {
			continue
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(off))
		b = binary.LittleEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	return b
}

// SparseFile is an unpacked file: an io.ReaderAt over zeros and pieces.
type SparseFile struct {
	size   int64
	pieces []piece // sorted by offset, later pieces win on overlap
}

type piece struct {
	off  int64
	data []byte
}

// Unpack decodes a packed file; malformed input yields a shorter file.
func Unpack(b []byte) *SparseFile {
	f := &SparseFile{}
	if len(b) < 4 {
		return f
	}
	f.size = min(int64(binary.LittleEndian.Uint32(b))*1024, maxPackedFile)
	b = b[4:]
	for len(b) >= 6 {
		off := int64(binary.LittleEndian.Uint32(b))
		n := int(binary.LittleEndian.Uint16(b[4:]))
		b = b[6:]
		n = min(n, len(b))
		if off < f.size {
			f.pieces = append(f.pieces, piece{off: off, data: b[:min(int64(n), f.size-off)]})
		}
		b = b[n:]
	}
	sort.SliceStable(f.pieces, func(i, j int) bool { return f.pieces[i].off < f.pieces[j].off })
	return f
}

// Size returns the file size.
func (f *SparseFile) Size() int64 { return f.size }

// ReadAt implements io.ReaderAt.
func (f *SparseFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= f.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), f.size-off))
	clear(p[:n])
	end := off + int64(n)
	i := sort.Search(len(f.pieces), func(i int) bool { return f.pieces[i].off+packPiece > off })
	for ; i < len(f.pieces) && f.pieces[i].off < end; i++ {
		pc := f.pieces[i]
		lo, hi := max(pc.off, off), min(pc.off+int64(len(pc.data)), end)
		if lo < hi {
			copy(p[lo-off:hi-off], pc.data[lo-pc.off:])
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Seed reads a seed image (gzip-compressed when named .gz) from
// image/testdata (see gen.sh there), from the directory of package image
// or of a format package below it.
func Seed(t testing.TB, name string) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "testdata", name))
	if os.IsNotExist(err) {
		f, err = os.Open(filepath.Join("testdata", name))
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if filepath.Ext(name) != ".gz" {
		b, err := io.ReadAll(f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(io.LimitReader(zr, maxPackedFile))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Typed reports whether err wraps one of the image sentinels, as every
// error from parsing an in-memory image must.
func Typed(err error) bool {
	for _, s := range []error{image.ErrCorrupt, image.ErrUnsupported, image.ErrLimit, image.ErrFormat, image.ErrOutOfRange} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// Exercise reads an opened image the way the transfer engine does, within
// bounds suitable for fuzzing: the map of the first 64 MiB, and up to
// 1 MiB of reads spread over its data extents. Every error must be typed.
func Exercise(t testing.TB, r image.Reader) {
	t.Helper()
	if r.Size() < 0 {
		t.Fatalf("negative size %d", r.Size())
	}
	n := min(r.Size(), 64<<20)
	m, err := r.Map(context.Background(), 0, n)
	if err != nil {
		if !Typed(err) {
			t.Fatalf("Map: untyped error %v", err)
		}
		return
	}
	pos := int64(0)
	for _, e := range m {
		if e.Off != pos || e.Len <= 0 {
			t.Fatalf("map extent %+v at %d", e, pos)
		}
		pos = e.End()
	}
	if pos != n {
		t.Fatalf("map covers %d of %d bytes", pos, n)
	}
	buf := make([]byte, 64<<10)
	budget := 16
	for _, e := range m {
		if budget == 0 {
			break
		}
		if e.Kind != image.Data {
			continue
		}
		budget--
		k := min(e.Len, int64(len(buf)))
		if _, err := r.ReadAt(buf[:k], e.Off); err != nil && !Typed(err) {
			t.Fatalf("ReadAt(%d, %d): untyped error %v", e.Off, k, err)
		}
	}
	// A read straddling the end.
	if r.Size() > 10 {
		if _, err := r.ReadAt(buf[:20], r.Size()-10); err != io.EOF && !Typed(err) {
			t.Fatalf("ReadAt across the end: %v, want io.EOF", err)
		}
	}
}

// Patch returns a copy of b with v written at off.
func Patch(b []byte, off int, v []byte) []byte {
	c := bytes.Clone(b)
	copy(c[off:], v)
	return c
}
