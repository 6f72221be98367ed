package iscsi_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lunway/lunway/target/initiator"
	"github.com/lunway/lunway/target/iscsitest"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, srv *iscsitest.Server, opts *initiator.Options) *initiator.Session {
	t.Helper()
	var o initiator.Options
	if opts != nil {
		o = *opts
	}
	if o.TargetName == "" {
		o.TargetName = srv.TargetName
	}
	s, err := initiator.Dial(ctxT(t), srv.Addr, &o)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if o.TargetName != "" {
		// A new nexus starts with a POWER ON / RESET unit attention.
		if _, err := s.ClearUnitAttentions(ctxT(t), 0); err != nil {
			t.Fatalf("clearing unit attentions: %v", err)
		}
	}
	return s
}

func TestLoginReadWrite(t *testing.T) {
	srv := iscsitest.Start(t, nil)
	s := dial(t, srv, nil)
	ctx := ctxT(t)
	if _, err := s.ClearUnitAttentions(ctx, 0); err != nil {
		t.Fatal(err)
	}
	c, err := s.ReadCapacity16(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if c.BlockSize != 512 || c.Blocks != (64<<20)/512 {
		t.Fatalf("capacity %+v", c)
	}
	res, err := s.Inquiry(ctx, 0, false, 0, 96)
	if err != nil || res.Err() != nil {
		t.Fatalf("inquiry: %v %v", err, res.Err())
	}
	if !bytes.Contains(res.Data, []byte("LUNWAY")) {
		t.Fatalf("inquiry data %q", res.Data)
	}
	data := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{1}).Read(data)
	for _, n := range []int{512, 4096, 65536, 300 << 10, 1 << 20} {
		res, err := s.Write16(ctx, 0, 100, 512, data[:n], n == 4096)
		if err != nil || res.Err() != nil {
			t.Fatalf("write %d: %v %v", n, err, res.Err())
		}
		buf := make([]byte, n)
		res, err = s.Read16(ctx, 0, 100, 512, buf)
		if err != nil || res.Err() != nil {
			t.Fatalf("read %d: %v %v", n, err, res.Err())
		}
		if !bytes.Equal(buf, data[:n]) {
			t.Fatalf("read back %d bytes: mismatch", n)
		}
	}
	if res, err := s.SynchronizeCache(ctx, 0); err != nil || res.Err() != nil {
		t.Fatalf("sync: %v %v", err, res.Err())
	}
	luns, err := s.ReportLUNs(ctx)
	if err != nil || len(luns) != 1 || luns[0] != 0 {
		t.Fatalf("luns %v %v", luns, err)
	}
	if got, err := s.Nop(ctx, []byte("hello")); err != nil || string(got) != "hello" {
		t.Fatalf("nop %q %v", got, err)
	}
	if err := s.Logout(ctx); err != nil {
		t.Fatal(err)
	}
}
