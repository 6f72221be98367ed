package iscsi

import (
	"math/bits"
	"sync"
)

// bufPool recycles data buffers in power-of-two size classes from 4 KiB
// to 32 MiB; larger requests are allocated and dropped.
type bufPool struct {
	classes [14]sync.Pool
}

const minClassShift = 12

func classOf(n int) int {
	if n <= 1<<minClassShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minClassShift
}

// get returns a buffer of length n (contents undefined).
func (p *bufPool) get(n int) []byte {
	c := classOf(n)
	if c >= len(p.classes) {
		return make([]byte, n)
	}
	if v := p.classes[c].Get(); v != nil {
		return (*v.(*[]byte))[:n]
	}
	return make([]byte, n, 1<<(c+minClassShift))
}

// put returns b to the pool.
func (p *bufPool) put(b []byte) {
	c := classOf(cap(b))
	if cap(b) == 0 || c >= len(p.classes) || cap(b) != 1<<(c+minClassShift) {
		return
	}
	b = b[:0]
	p.classes[c].Put(&b)
}
