package raw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/lunway/lunway/image"
)

// Linux lseek whence values for sparse files.
const (
	seekData = 3
	seekHole = 4
)

// Reader is a raw image. It implements image.Reader.
type Reader struct {
	r    io.ReaderAt
	size int64
	// f, when the source is an *os.File, answers Map from the file's
	// holes. lseek moves the shared file offset, hence the lock.
	f      *os.File
	seekMu sync.Mutex
}

var _ image.Reader = (*Reader)(nil)

// Open returns a raw image over r of size bytes.
func Open(r io.ReaderAt, size int64) (*Reader, error) {
	if size < 0 {
		return nil, fmt.Errorf("raw: size %d: %w", size, image.ErrCorrupt)
	}
	rd := &Reader{r: r, size: size}
	if f, ok := r.(*os.File); ok {
		rd.f = f
	}
	return rd, nil
}

// Format implements image.Reader.
func (r *Reader) Format() image.Format { return image.Raw }

// Size implements image.Reader.
func (r *Reader) Size() int64 { return r.size }

// ReadAt implements image.Reader.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	n, eof := image.CheckRead(p, off, r.size)
	if n == 0 {
		return 0, eof
	}
	m, err := r.r.ReadAt(p[:n], off)
	if m < n {
		if err == nil || err == io.EOF {
			// The file is shorter than it was at Open: read as zeros.
			clear(p[m:n])
			m = n
		} else {
			return m, err
		}
	}
	return m, eof
}

// Map implements image.Reader.
func (r *Reader) Map(ctx context.Context, off, length int64) ([]image.Extent, error) {
	length, err := image.CheckMap(off, length, r.size)
	if err != nil {
		return nil, err
	}
	if length == 0 {
		return nil, nil
	}
	if r.f == nil {
		return []image.Extent{{Off: off, Len: length, Kind: image.Data}}, nil
	}
	r.seekMu.Lock()
	defer r.seekMu.Unlock()
	var out image.ExtentList
	end := off + length
	for pos := off; pos < end; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		data, err := r.f.Seek(pos, seekData)
		if err != nil {
			if errors.Is(err, syscall.ENXIO) { // no data after pos
				out.Add(pos, end-pos, image.Hole)
				break
			}
			if errors.Is(err, syscall.EINVAL) && pos == off { // no SEEK_DATA support
				return []image.Extent{{Off: off, Len: length, Kind: image.Data}}, nil
			}
			return nil, fmt.Errorf("raw: seek data at %d: %w", pos, err)
		}
		data = min(data, end)
		out.Add(pos, data-pos, image.Hole)
		if data >= end {
			break
		}
		hole, err := r.f.Seek(data, seekHole)
		if err != nil {
			return nil, fmt.Errorf("raw: seek hole at %d: %w", data, err)
		}
		hole = min(max(hole, data+1), end)
		out.Add(data, hole-data, image.Data)
		pos = hole
	}
	return out, nil
}

// Close implements image.Reader. It does not close the underlying file.
func (r *Reader) Close() error { return nil }

// Writer writes a raw image. It implements image.Writer.
type Writer struct {
	s    *image.Sink
	size int64
	done bool
}

var _ image.Writer = (*Writer)(nil)

// NewWriter returns a writer of a raw image of size bytes to w. When w has
// random access (an *os.File), holes and all-zero data are skipped and the
// file is truncated to size in Close; on a pipe every byte is written.
func NewWriter(w io.Writer, size int64) (*Writer, error) {
	if size < 0 || size > image.MaxVirtualSize {
		return nil, image.Limitf("raw: virtual size %d", size)
	}
	return &Writer{s: image.NewSink(w), size: size}, nil
}

// Size implements image.Writer.
func (w *Writer) Size() int64 { return w.size }

// WriteAt implements image.Writer.
func (w *Writer) WriteAt(p []byte, off int64) (int, error) {
	if w.done {
		return 0, image.ErrClosed
	}
	if off < w.s.Pos() {
		return 0, fmt.Errorf("raw: %w: offset %d below %d", image.ErrOrder, off, w.s.Pos())
	}
	if int64(len(p)) > w.size-off {
		return 0, fmt.Errorf("raw: %w: write of %d bytes at %d, size %d", image.ErrOutOfRange, len(p), off, w.size)
	}
	if err := w.s.Skip(off - w.s.Pos()); err != nil {
		return 0, err
	}
	if w.s.Seekable() && image.IsZero(p) {
		return len(p), w.s.Skip(int64(len(p)))
	}
	if err := w.s.Write(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close implements image.Writer.
func (w *Writer) Close() error {
	if w.done {
		return image.ErrClosed
	}
	w.done = true
	if err := w.s.Skip(w.size - w.s.Pos()); err != nil {
		return err
	}
	return w.s.Finish(w.size)
}
