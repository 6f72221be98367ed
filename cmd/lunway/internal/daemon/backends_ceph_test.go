//go:build ceph

package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	gorbd "github.com/ceph/go-ceph/rbd"

	"github.com/lunway/lunway/backend/rados"
	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"github.com/lunway/lunway/internal/testenv"
)

func cephTestLUN(t *testing.T) (*config.Config, config.LUN) {
	env := testenv.Ceph(t)
	var b [5]byte
	rand.Read(b[:])
	image := "lw-daemon-" + hex.EncodeToString(b[:])
	c := &config.Ceph{ConfFile: env["CEPH_CONF"], Keyring: env["CEPH_KEYRING"], Pool: env["CEPH_POOL"]}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := rados.Connect(ctx, &rados.ConnOptions{ConfFile: c.ConfFile, Keyring: c.Keyring})
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		io, err := conn.OpenIOContext(c.Pool, "")
		if err != nil {
			t.Error(err)
			return
		}
		defer io.Destroy()
		if err := gorbd.RemoveImage(io, image); err != nil && !errors.Is(err, gorbd.ErrNotFound) {
			t.Error(err)
		}
	})
	cfg := &config.Config{DataDir: t.TempDir()}
	return cfg, config.LUN{LUN: 0, Size: 8 << 20, Backend: config.Backend{Type: "rbd", Image: image, Ceph: c}}
}

// TestCephRBDIdentity: the identity one gateway keeps in the image is
// what the next gateway opening the image finds.
func TestCephRBDIdentity(t *testing.T) {
	cfg, lc := cephTestLUN(t)
	log := slog.New(slog.DiscardHandler)
	ob, err := openRBD(t.Context(), cfg, lc, "targets[0].luns[0].backend", log)
	if err != nil {
		t.Fatal(err)
	}
	if ob.key != "rbd:"+lc.Backend.Ceph.Pool+"//"+lc.Backend.Image {
		t.Errorf("key %q", ob.key)
	}
	a := ob.dev.(*rbdLUN)
	if naa, serial := a.StoredIdentity(); naa != "" || serial != "" {
		t.Fatalf("new image has identity %q %q", naa, serial)
	}
	id, err := newIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.KeepIdentity(id.NAA, id.Serial); err != nil {
		t.Fatal(err)
	}
	// A second gateway (sharing the image, no exclusive lock) sees it.
	ob2, err := openRBD(t.Context(), cfg, lc, "targets[0].luns[0].backend", log)
	if err != nil {
		t.Fatal(err)
	}
	b := ob2.dev.(*rbdLUN)
	if naa, serial := b.StoredIdentity(); naa != id.NAA || serial != id.Serial {
		t.Fatalf("second gateway finds %q %q, want %q %q", naa, serial, id.NAA, id.Serial)
	}
	// A read-only LUN never writes the image.
	ro := lc
	ro.ReadOnly = true
	ob3, err := openRBD(t.Context(), cfg, ro, "x", log)
	if err != nil {
		t.Fatal(err)
	}
	if err := ob3.dev.(*rbdLUN).KeepIdentity("6"+strings.Repeat("0", 31), "other"); err != nil {
		t.Fatalf("KeepIdentity on a read-only LUN: %v", err)
	}
	for _, ob := range []*openedBackend{ob, ob2, ob3} {
		if err := ob.dev.Close(); err != nil {
			t.Error(err)
		}
	}
	// The optional capabilities pass through the wrapper.
	var dev blockdev.Device = a
	if _, ok := dev.(blockdev.Unmapper); !ok {
		t.Error("rbdLUN is not an Unmapper")
	}
	if _, ok := dev.(blockdev.HealthReporter); !ok {
		t.Error("rbdLUN is not a HealthReporter")
	}
}

// TestCephFieldErrors: each Ceph error lands on the field it is about,
// and only unreachable clusters are transient.
func TestCephFieldErrors(t *testing.T) {
	const bf = "targets[0].luns[1].backend"
	tests := []struct {
		err       error
		field     string
		transient bool
	}{
		{rados.OptionErr("keyring", "x"), bf + ".ceph.keyring", false},
		{rados.OptionErr("pool", "x"), bf + ".ceph.pool", false},
		{rados.OptionErr("image", "x"), bf + ".image", false},
		{rados.OptionErr("exclusive_lock", "x"), bf + ".exclusive_lock", false},
		{rados.OptionErr("size", "x"), "targets[0].luns[1].size", false},
		{rados.OptionErr("features", "x"), bf, false},
		{&rados.OptionError{Option: "mon_host", Msg: "x", Transient: true}, bf + ".ceph.mon_host", true},
		{errors.Join(errors.New("x"), blockdev.ErrInUse), bf + ".exclusive_lock", false},
		{errors.Join(errors.New("x"), blockdev.ErrUnavailable), bf + ".ceph", true},
	}
	for _, tt := range tests {
		err := cephFieldError(tt.err, bf, bf+".ceph")
		if !strings.HasPrefix(err.Error(), tt.field+": ") {
			t.Errorf("%v → %q; want field %s", tt.err, err, tt.field)
		}
		if errors.Is(err, blockdev.ErrUnavailable) != tt.transient {
			t.Errorf("%v → transient %v", tt.err, !tt.transient)
		}
		var fe *config.FieldError
		if errors.As(err, &fe) == tt.transient {
			t.Errorf("%v → FieldError %v; want %v", tt.err, !tt.transient, !tt.transient)
		}
	}
}
