package file

import "unsafe"

// bounceSize is the size of the aligned buffers that carry unaligned
// caller buffers through O_DIRECT, and of the zero buffer.
const bounceSize = 1 << 20

// alignedBuf returns n bytes starting at a multiple of align.
func alignedBuf(n, align int) []byte {
	b := make([]byte, n+align)
	skip := 0
	if r := int(uintptr(unsafe.Pointer(&b[0])) % uintptr(align)); r != 0 {
		skip = align - r
	}
	return b[skip : skip+n : skip+n]
}

// aligned reports whether p may be used for O_DIRECT as it is.
func (d *Device) aligned(p []byte) bool {
	return uintptr(unsafe.Pointer(&p[0]))%uintptr(d.memAlign) == 0
}

// bounce runs fn over p in chunks through an aligned buffer: for reads the
// chunk is copied out after fn, for writes in before it.
func (d *Device) bounce(p []byte, off int64, fn func(buf []byte, off int64) error, read bool) error {
	bp, _ := d.bufs.Get().(*[]byte)
	if bp == nil {
		b := alignedBuf(bounceSize, d.memAlign)
		bp = &b
	}
	defer d.bufs.Put(bp)
	buf := *bp
	for len(p) > 0 {
		n := min(len(p), len(buf))
		chunk := buf[:n]
		if !read {
			copy(chunk, p[:n])
		}
		if err := fn(chunk, off); err != nil {
			return err
		}
		if read {
			copy(p[:n], chunk)
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// zeroBuf returns an aligned buffer of zeros, never written.
func (d *Device) zeroBuf() []byte {
	d.zeroOnce.Do(func() { d.zeros = alignedBuf(bounceSize, d.memAlign) })
	return d.zeros
}
