package image

import (
	"fmt"
	"io"
)

// Sink is the destination of a Writer: a sequential io.Writer, optionally
// with random access (io.WriterAt). Formats that must go back to fill in
// a table call WriteAtPos, which needs random access; holes are skipped by
// moving the position when the destination has random access, and written
// as zeros on a pipe.
type Sink struct {
	w     io.Writer
	wa    io.WriterAt
	pos   int64
	end   int64 // highest offset written + 1
	zeros []byte
	err   error
}

// NewSink wraps w. If w implements io.WriterAt (and, when it is also an
// io.Seeker, can seek: an *os.File on a pipe or terminal cannot), every
// write goes through WriteAt at absolute offsets and w's own file offset
// is left alone.
func NewSink(w io.Writer) *Sink {
	s := &Sink{w: w}
	if wa, ok := w.(io.WriterAt); ok {
		s.wa = wa
		if sk, ok := w.(io.Seeker); ok {
			if _, err := sk.Seek(0, io.SeekCurrent); err != nil {
				s.wa = nil
			}
		}
	}
	return s
}

// Seekable reports whether the destination has random access.
func (s *Sink) Seekable() bool { return s.wa != nil }

// Pos returns the current sequential position.
func (s *Sink) Pos() int64 { return s.pos }

// Err returns the first write error, which every later call also returns.
func (s *Sink) Err() error { return s.err }

// Write appends p at the current position.
func (s *Sink) Write(p []byte) error {
	if s.err != nil {
		return s.err
	}
	var err error
	if s.wa != nil {
		_, err = s.wa.WriteAt(p, s.pos)
	} else {
		_, err = s.w.Write(p)
	}
	if err != nil {
		s.err = fmt.Errorf("image: write at %d: %w", s.pos, err)
		return s.err
	}
	s.pos += int64(len(p))
	s.end = max(s.end, s.pos)
	return nil
}

// WriteSparse appends p like Write, but with random access it leaves the
// all-zero 64 KiB pieces of p as holes (they read as zeros in a fresh
// file), saving the write and the disk space.
func (s *Sink) WriteSparse(p []byte) error {
	if s.wa == nil {
		return s.Write(p)
	}
	const piece = 64 << 10
	for len(p) > 0 {
		n := min(len(p), piece)
		var err error
		if IsZero(p[:n]) {
			err = s.Skip(int64(n))
		} else {
			err = s.Write(p[:n])
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// Skip advances the position by n bytes that must read as zeros: a hole
// when the destination has random access (see Finish), zeros otherwise.
func (s *Sink) Skip(n int64) error {
	if s.err != nil {
		return s.err
	}
	if s.wa != nil {
		s.pos += n
		return nil
	}
	if s.zeros == nil {
		s.zeros = make([]byte, 256<<10)
	}
	for n > 0 {
		k := min(n, int64(len(s.zeros)))
		if err := s.Write(s.zeros[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// WriteAtPos writes p at off without moving the position. It needs random
// access.
func (s *Sink) WriteAtPos(p []byte, off int64) error {
	if s.err != nil {
		return s.err
	}
	if s.wa == nil {
		return ErrNotSeekable
	}
	if _, err := s.wa.WriteAt(p, off); err != nil {
		s.err = fmt.Errorf("image: write at %d: %w", off, err)
		return s.err
	}
	s.end = max(s.end, off+int64(len(p)))
	return nil
}

// truncater is implemented by *os.File.
type truncater interface{ Truncate(size int64) error }

// Finish makes the destination exactly size bytes long when it has random
// access and the tail was skipped: it truncates (an *os.File) or writes a
// final zero byte.
func (s *Sink) Finish(size int64) error {
	if s.err != nil {
		return s.err
	}
	if s.wa == nil || s.end >= size {
		return nil
	}
	if t, ok := s.w.(truncater); ok {
		if err := t.Truncate(size); err != nil {
			s.err = fmt.Errorf("image: truncate to %d: %w", size, err)
			return s.err
		}
		s.end = size
		return nil
	}
	return s.WriteAtPos([]byte{0}, size-1)
}
