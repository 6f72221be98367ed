package qcow2

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/lunway/lunway/image"
)

// WriterOptions configure a Writer. The zero value (or nil) writes a
// version 3 image with 64 KiB clusters.
type WriterOptions struct {
	// Version is 3 (qemu-img compat=1.1, the default) or 2 (compat=0.10).
	Version int
	// ClusterSize is a power of two from 512 bytes to 2 MiB (default 64 KiB).
	ClusterSize int
}

// Validate checks the options and fills in defaults.
func (o *WriterOptions) Validate() error {
	if o.Version == 0 {
		o.Version = 3
	}
	if o.ClusterSize == 0 {
		o.ClusterSize = 64 << 10
	}
	if o.Version != 2 && o.Version != 3 {
		return fmt.Errorf("qcow2: version %d: must be 2 or 3: %w", o.Version, image.ErrUnsupported)
	}
	if o.ClusterSize < 1<<minClusterBits || o.ClusterSize > 1<<maxClusterBits || o.ClusterSize&(o.ClusterSize-1) != 0 {
		return fmt.Errorf("qcow2: cluster size %d: must be a power of two from 512 to 2 MiB: %w", o.ClusterSize, image.ErrUnsupported)
	}
	return nil
}

// Writer writes a qcow2 image. It implements image.Writer.
type Writer struct {
	s           *image.Sink
	opts        WriterOptions
	size        int64
	clusterBits uint32
	cs          int64
	l2Bits      uint32
	l1Size      int64
	l2          map[int64][]uint64 // L1 index → L2 entries
	nextHost    int64              // next free host cluster offset
	ck          image.Chunker
	done        bool
}

var _ image.Writer = (*Writer)(nil)

// NewWriter starts a qcow2 image of size bytes on w, which must implement
// io.WriterAt (the header is written last) and should be empty.
func NewWriter(w io.Writer, size int64, opts *WriterOptions) (*Writer, error) {
	var o WriterOptions
	if opts != nil {
		o = *opts
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if size < 0 || size > image.MaxVirtualSize {
		return nil, image.Limitf("qcow2: virtual size %d", size)
	}
	s := image.NewSink(w)
	if !s.Seekable() {
		return nil, fmt.Errorf("qcow2: writer: %w", image.ErrNotSeekable)
	}
	q := &Writer{s: s, opts: o, size: size, cs: int64(o.ClusterSize), l2: make(map[int64][]uint64)}
	for int64(1)<<q.clusterBits < q.cs {
		q.clusterBits++
	}
	q.l2Bits = q.clusterBits - 3
	perL1 := int64(1) << (q.clusterBits + q.l2Bits)
	q.l1Size = (size + perL1 - 1) / perL1
	if q.l1Size*8 > image.MaxTableBytes {
		return nil, image.Limitf("qcow2: L1 table of %d entries", q.l1Size)
	}
	q.nextHost = q.cs // cluster 0 is the header
	q.ck = image.Chunker{ClusterSize: q.cs, Size: size, Emit: q.emit}
	return q, nil
}

// Size implements image.Writer.
func (q *Writer) Size() int64 { return q.size }

// WriteAt implements image.Writer.
func (q *Writer) WriteAt(p []byte, off int64) (int, error) {
	if q.done {
		return 0, image.ErrClosed
	}
	n, err := q.ck.WriteAt(p, off)
	if err != nil {
		return n, fmt.Errorf("qcow2: %w", err)
	}
	return n, nil
}

func (q *Writer) emit(gc int64, data []byte) error {
	host := q.nextHost
	if err := q.s.WriteAtPos(data, host); err != nil {
		return err
	}
	q.nextHost += q.cs
	i := gc >> q.l2Bits
	t := q.l2[i]
	if t == nil {
		t = make([]uint64, 1<<q.l2Bits)
		q.l2[i] = t
	}
	t[gc&(1<<q.l2Bits-1)] = uint64(host) | entryCopied
	return nil
}

// Close implements image.Writer: it writes the L2 tables, the L1 table,
// the refcount structures and finally the header.
func (q *Writer) Close() error {
	if q.done {
		return image.ErrClosed
	}
	q.done = true
	if err := q.ck.Flush(); err != nil {
		return fmt.Errorf("qcow2: %w", err)
	}
	cs := q.cs
	// L2 tables, in L1 order.
	l1 := make([]uint64, q.l1Size)
	idx := make([]int64, 0, len(q.l2))
	for i := range q.l2 {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	buf := make([]byte, cs)
	for _, i := range idx {
		for j, e := range q.l2[i] {
			binary.BigEndian.PutUint64(buf[j*8:], e)
		}
		if err := q.s.WriteAtPos(buf, q.nextHost); err != nil {
			return err
		}
		l1[i] = uint64(q.nextHost) | entryCopied
		q.nextHost += cs
	}
	// L1 table.
	l1Off := q.nextHost
	l1Clusters := max(1, (q.l1Size*8+cs-1)/cs)
	l1Buf := make([]byte, l1Clusters*cs)
	for i, e := range l1 {
		binary.BigEndian.PutUint64(l1Buf[i*8:], e)
	}
	if err := q.s.WriteAtPos(l1Buf, l1Off); err != nil {
		return err
	}
	q.nextHost += l1Clusters * cs
	// Refcounts (16 bits each): every cluster up to the end, including the
	// refcount blocks and table themselves, has refcount 1.
	perBlock := cs / 2
	used := q.nextHost / cs
	var blocks, tableClusters int64
	for {
		total := used + blocks + tableClusters
		nb := (total + perBlock - 1) / perBlock
		nt := max(1, (nb*8+cs-1)/cs)
		if nb == blocks && nt == tableClusters {
			break
		}
		blocks, tableClusters = nb, nt
	}
	total := used + blocks + tableClusters
	rbOff := q.nextHost
	rtOff := rbOff + blocks*cs
	rt := make([]byte, tableClusters*cs)
	for b := int64(0); b < blocks; b++ {
		clear(buf)
		for j := int64(0); j < perBlock; j++ {
			if b*perBlock+j < total {
				binary.BigEndian.PutUint16(buf[j*2:], 1)
			}
		}
		if err := q.s.WriteAtPos(buf, rbOff+b*cs); err != nil {
			return err
		}
		binary.BigEndian.PutUint64(rt[b*8:], uint64(rbOff+b*cs))
	}
	if err := q.s.WriteAtPos(rt, rtOff); err != nil {
		return err
	}
	h := Header{
		Version:               uint32(q.opts.Version),
		ClusterBits:           q.clusterBits,
		Size:                  uint64(q.size),
		L1Size:                uint32(q.l1Size),
		L1TableOffset:         uint64(l1Off),
		RefcountTableOffset:   uint64(rtOff),
		RefcountTableClusters: uint32(tableClusters),
		RefcountOrder:         4,
		HeaderLength:          v3HeaderLen,
	}
	if h.Version == 2 {
		h.HeaderLength = v2HeaderLen
	}
	hdr := make([]byte, cs)
	copy(hdr, h.Append(nil))
	if err := q.s.WriteAtPos(hdr, 0); err != nil {
		return err
	}
	return q.s.Finish(total * cs)
}
