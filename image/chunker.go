package image

import "fmt"

// Chunker turns ordered WriteAt calls into whole clusters for the writers
// of cluster-based formats. Each cluster that received any non-zero byte is
// passed to Emit exactly once, in increasing order, padded with zeros (the
// last cluster of the disk too); all-zero clusters are dropped and stay
// holes.
type Chunker struct {
	// ClusterSize is the cluster size in bytes (> 0).
	ClusterSize int64
	// Size is the virtual size; writes past it fail with ErrOutOfRange.
	Size int64
	// Emit receives cluster idx (byte offset idx*ClusterSize). data is
	// only valid during the call.
	Emit func(idx int64, data []byte) error

	buf  []byte
	cur  int64 // index of the buffered cluster, -1 when none
	next int64 // lowest offset the next write may start at
	init bool
	err  error
}

func (c *Chunker) setup() {
	if !c.init {
		c.buf = make([]byte, c.ClusterSize)
		c.cur = -1
		c.init = true
	}
}

// WriteAt implements the ordering contract of Writer.
func (c *Chunker) WriteAt(p []byte, off int64) (int, error) {
	c.setup()
	if c.err != nil {
		return 0, c.err
	}
	if off < c.next {
		return 0, fmt.Errorf("%w: offset %d below %d", ErrOrder, off, c.next)
	}
	if off < 0 || int64(len(p)) > c.Size-off {
		return 0, fmt.Errorf("%w: write of %d bytes at %d, size %d", ErrOutOfRange, len(p), off, c.Size)
	}
	n := len(p)
	for len(p) > 0 {
		idx, in := off/c.ClusterSize, off%c.ClusterSize
		k := min(int64(len(p)), c.ClusterSize-in)
		if idx != c.cur {
			if err := c.flush(); err != nil {
				return 0, err
			}
			// A whole cluster of zeros is never buffered.
			if in == 0 && k == c.ClusterSize && IsZero(p[:k]) {
				p, off = p[k:], off+k
				continue
			}
			c.cur = idx
		}
		copy(c.buf[in:], p[:k])
		p, off = p[k:], off+k
	}
	c.next = off
	return n, nil
}

func (c *Chunker) flush() error {
	if c.cur < 0 {
		return nil
	}
	idx := c.cur
	c.cur = -1
	if !IsZero(c.buf) {
		if err := c.Emit(idx, c.buf); err != nil {
			c.err = err
			return err
		}
	}
	clear(c.buf)
	return nil
}

// Flush emits the buffered cluster. Call it once, from the writer's Close.
func (c *Chunker) Flush() error {
	c.setup()
	if c.err != nil {
		return c.err
	}
	return c.flush()
}
