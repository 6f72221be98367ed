//go:build ceph

package rbd_test

import (
	"context"
	"errors"
	"testing"
	"time"

	gorbd "github.com/ceph/go-ceph/rbd"

	"github.com/lunway/lunway/backend/rados"
	"github.com/lunway/lunway/backend/rbd"
)

// removeImage deletes a test image (and nothing else).
func removeImage(t *testing.T, o rbd.Options) { removeImageTB(t, o) }

func removeImageTB(t testing.TB, o rbd.Options) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := rados.Connect(ctx, &o.ConnOptions)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer conn.Close()
	io, err := conn.OpenIOContext(o.Pool, o.Namespace)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer io.Destroy()
	if err := gorbd.RemoveImage(io, o.Image); err != nil && !errors.Is(err, gorbd.ErrNotFound) {
		t.Errorf("cleanup: removing image %s: %v", o.Image, err)
	}
}
