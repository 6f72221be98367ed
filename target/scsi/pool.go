package scsi

import "sync"

// bufPool recycles data buffers in power-of-two size classes from
// minPoolBuf up to the LU's maximum transfer, so that READ and WRITE SAME
// do not allocate per command. A Result carries the buffer's release
// function; Result.Release puts the buffer back.
type bufPool struct {
	classes []sync.Pool // class i holds *pooledBuf of minPoolBuf<<i bytes
}

const minPoolBuf = 4 << 10

type pooledBuf struct {
	b       []byte
	pool    *sync.Pool
	release func() // bound once, so that handing it out does not allocate
}

func newBufPool(maxBytes int) *bufPool {
	p := &bufPool{}
	for size := minPoolBuf; ; size <<= 1 {
		p.classes = append(p.classes, sync.Pool{})
		if size >= maxBytes {
			break
		}
	}
	for i := range p.classes {
		size := minPoolBuf << i
		pool := &p.classes[i]
		pool.New = func() any {
			pb := &pooledBuf{b: make([]byte, size), pool: pool}
			pb.release = func() { pb.pool.Put(pb) }
			return pb
		}
	}
	return p
}

// get returns a buffer of n bytes and its release function. Requests
// larger than the largest class are allocated and left to the collector.
func (p *bufPool) get(n int) ([]byte, func()) {
	for i := range p.classes {
		if n <= minPoolBuf<<i {
			pb := p.classes[i].Get().(*pooledBuf)
			return pb.b[:n], pb.release
		}
	}
	return make([]byte, n), nil
}
