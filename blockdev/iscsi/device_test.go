package iscsi_test

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"

	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockdev/blockdevtest"
	"github.com/lunway/lunway/blockdev/iscsi"
	"github.com/lunway/lunway/target/initiator"
	tiscsi "github.com/lunway/lunway/target/iscsi"
	"github.com/lunway/lunway/target/iscsitest"
	"github.com/lunway/lunway/target/pdu"
)

// plain hides every optional capability of the device it wraps: the LU
// on top of it is thick and has no UNMAP or GET LBA STATUS.
type plain struct{ d blockdev.Device }

func (p plain) ReadAt(ctx context.Context, b []byte, off int64) error { return p.d.ReadAt(ctx, b, off) }
func (p plain) WriteAt(ctx context.Context, b []byte, off int64, f blockdev.WriteFlags) error {
	return p.d.WriteAt(ctx, b, off, f)
}
func (p plain) Flush(ctx context.Context) error { return p.d.Flush(ctx) }
func (p plain) Info() blockdev.Info {
	i := p.d.Info()
	i.Thin = false
	return i
}
func (p plain) Close() error { return p.d.Close() }

// readOnly is a thick device that refuses writes and says so in Info.
type readOnly struct{ plain }

func (r readOnly) WriteAt(context.Context, []byte, int64, blockdev.WriteFlags) error {
	return blockdev.ErrReadOnly
}
func (r readOnly) Info() blockdev.Info {
	i := r.plain.Info()
	i.ReadOnly = true
	return i
}

// target returns the Target of LUN lun of a test server.
func target(s *iscsitest.Server, lun int) iscsi.Target {
	return iscsi.Target{Addr: s.Addr, IQN: s.TargetName, LUN: uint64(lun)}
}

func openDev(t testing.TB, tg iscsi.Target, o *iscsi.Options) blockdev.Device {
	t.Helper()
	d, err := iscsi.Open(context.Background(), tg, o)
	if err != nil {
		t.Fatalf("Open %s: %v", tg, err)
	}
	return d
}

func TestConformance(t *testing.T) {
	cases := []struct {
		name string
		bs   int
		wrap func(int, blockdev.Device) blockdev.Device
		caps blockdevtest.Caps
		size int64
	}{
		{"thin-512", 512, nil, blockdevtest.CapUnmap | blockdevtest.CapWriteZeroes | blockdevtest.CapAllocationStatus, 4 << 20},
		{"thin-4096", 4096, nil, blockdevtest.CapUnmap | blockdevtest.CapWriteZeroes | blockdevtest.CapAllocationStatus, 1 << 20},
		{"thick-512", 512, func(_ int, d blockdev.Device) blockdev.Device { return plain{d} }, blockdevtest.CapWriteZeroes, 1 << 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			servers := map[blockdev.Device]*iscsitest.Server{}
			open := func(t *testing.T, size int64) blockdev.Device {
				s := iscsitest.Start(t, &iscsitest.Options{SizeBytes: size, BlockSize: tc.bs, Wrap: tc.wrap})
				// A small transfer limit makes multi-command requests common.
				d := openDev(t, target(s, 0), &iscsi.Options{MaxTransferBytes: 64 << 10})
				servers[d] = s
				return d
			}
			blockdevtest.Run(t, open, &blockdevtest.Options{
				SizeBytes: tc.size,
				ExactCaps: true,
				Caps:      tc.caps,
				Reopen: func(t *testing.T, d blockdev.Device) blockdev.Device {
					s := servers[d]
					if err := d.Close(); err != nil {
						t.Fatalf("Close: %v", err)
					}
					d2 := openDev(t, target(s, 0), nil)
					servers[d2] = s
					return d2
				},
				OpenReadOnly: func(t *testing.T, size int64) blockdev.Device {
					s := iscsitest.Start(t, &iscsitest.Options{SizeBytes: size, BlockSize: tc.bs,
						Wrap: func(_ int, d blockdev.Device) blockdev.Device { return readOnly{plain{d}} }})
					return openDev(t, target(s, 0), nil)
				},
			})
		})
	}
}

// TestOpenErrors: a missing LUN, a wrong target name, a closed port and
// a wrong CHAP secret fail Open with errors that say so.
func TestOpenErrors(t *testing.T) {
	s := iscsitest.Start(t, &iscsitest.Options{SizeBytes: 1 << 20})
	sc := iscsitest.Start(t, &iscsitest.Options{SizeBytes: 1 << 20, Server: tiscsi.Options{AuthFailureDelay: -1}, Target: func(c *tiscsi.TargetConfig) {
		c.CHAP = &tiscsi.CHAPConfig{User: "bob", Secret: "a-secret-of-12+"}
	}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	loginStatus := func(want uint16) func(error) bool {
		return func(err error) bool {
			var le *initiator.LoginError
			return errors.As(err, &le) && le.Status == want
		}
	}
	is := func(want error) func(error) bool { return func(err error) bool { return errors.Is(err, want) } }
	for _, tc := range []struct {
		name string
		t    iscsi.Target
		ok   func(error) bool
	}{
		{"no such LUN", iscsi.Target{Addr: s.Addr, IQN: s.TargetName, LUN: 7}, is(iscsi.ErrNoLUN)},
		{"empty target", iscsi.Target{Addr: s.Addr}, is(iscsi.ErrURL)},
		{"LUN beyond the addressable", iscsi.Target{Addr: s.Addr, IQN: s.TargetName, LUN: 1 << 20}, is(iscsi.ErrURL)},
		{"no such target", iscsi.Target{Addr: s.Addr, IQN: "iqn.2026-11.dev.lunway:nosuch"}, loginStatus(pdu.LoginTargetNotFound)},
		{"closed port", iscsi.Target{Addr: closed, IQN: s.TargetName}, is(syscall.ECONNREFUSED)},
		{"CHAP needed", iscsi.Target{Addr: sc.Addr, IQN: sc.TargetName}, loginStatus(pdu.LoginAuthFailure)},
		{"CHAP wrong secret", iscsi.Target{Addr: sc.Addr, IQN: sc.TargetName, User: "bob", Secret: "wrong-secret-123"}, loginStatus(pdu.LoginAuthFailure)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := iscsi.Open(context.Background(), tc.t, nil)
			if err == nil {
				d.Close()
				t.Fatalf("Open succeeded")
			}
			if !tc.ok(err) {
				t.Fatalf("Open: unexpected error %v", err)
			}
		})
	}
	// And the right secret works.
	d := openDev(t, iscsi.Target{Addr: sc.Addr, IQN: sc.TargetName, User: "bob", Secret: "a-secret-of-12+"}, nil)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestTargetString(t *testing.T) {
	tg := iscsi.Target{Addr: "127.0.0.1:3260", IQN: "iqn.x:y", LUN: 3, User: "bob", Secret: "hunter2"}
	if got, want := tg.String(), "iscsi://bob@127.0.0.1:3260/iqn.x:y/3"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	back, err := iscsi.ParseURL(tg.String())
	if err != nil || back.Addr != tg.Addr || back.IQN != tg.IQN || back.LUN != 3 || back.User != "bob" {
		t.Fatalf("ParseURL(String()) = %+v, %v", back, err)
	}
}
