//go:build ceph

package rados_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/backendtest"
	"github.com/lunway/lunway/backend/rados"
	"github.com/lunway/lunway/internal/testenv"
)

// clusterOptions returns store options for the test cluster, with a fresh
// namespace whose objects are deleted when the test ends.
func clusterOptions(t *testing.T) rados.Options {
	t.Helper()
	env := testenv.Ceph(t)
	var b [6]byte
	rand.Read(b[:])
	o := rados.Options{
		ConnOptions: rados.ConnOptions{ConfFile: env["CEPH_CONF"], Keyring: env["CEPH_KEYRING"]},
		Pool:        env["CEPH_POOL"],
		Namespace:   "lw-" + strings.ReplaceAll(t.Name(), "/", "-")[:min(len(t.Name()), 40)] + "-" + hex.EncodeToString(b[:]),
	}
	t.Cleanup(func() { purge(t, o) })
	return o
}

// purge deletes every object of o's namespace.
func purge(t *testing.T, o rados.Options) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := rados.Open(ctx, &o)
	if err != nil {
		t.Errorf("purge %s: %v", o.Namespace, err)
		return
	}
	defer s.Close()
	var names []string
	if err := s.List(ctx, "", func(oi backend.ObjectInfo) error {
		names = append(names, oi.Name)
		return nil
	}); err != nil {
		t.Errorf("purge %s: %v", o.Namespace, err)
	}
	for _, n := range names {
		if err := s.Delete(ctx, n); err != nil {
			t.Errorf("purge %s: %v", o.Namespace, err)
			return
		}
	}
}

func openStore(t *testing.T, o rados.Options) *rados.Store {
	t.Helper()
	s, err := rados.Open(t.Context(), &o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestCephConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Store {
		return openStore(t, clusterOptions(t))
	})
}

// TestCephNamespaces: stores on two namespaces of one pool do not see each
// other's objects.
func TestCephNamespaces(t *testing.T) {
	a, b := clusterOptions(t), clusterOptions(t)
	sa, sb := openStore(t, a), openStore(t, b)
	defer sa.Close()
	defer sb.Close()
	ctx := t.Context()
	if err := sa.Put(ctx, "x", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Stat(ctx, "x"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("namespace %s sees %s's object: %v", b.Namespace, a.Namespace, err)
	}
	n := 0
	sb.List(ctx, "", func(backend.ObjectInfo) error { n++; return nil })
	if n != 0 {
		t.Fatalf("namespace %s lists %d objects", b.Namespace, n)
	}
}

// TestCephListBound: a listing larger than MaxListNames fails instead of
// growing without bound.
func TestCephListBound(t *testing.T) {
	o := clusterOptions(t)
	o.MaxListNames = 5
	s := openStore(t, o)
	defer s.Close()
	for _, n := range []string{"a1", "a2", "a3", "b1", "b2", "b3"} {
		if err := s.Put(t.Context(), n, []byte(n)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	if err := s.List(t.Context(), "a", func(oi backend.ObjectInfo) error { got = append(got, oi.Name); return nil }); err != nil || len(got) != 3 {
		t.Fatalf("List(a) = %q, %v", got, err)
	}
	if err := s.List(t.Context(), "", func(backend.ObjectInfo) error { return nil }); !errors.Is(err, rados.ErrTooMany) {
		t.Fatalf("List of 6 objects with MaxListNames 5 = %v; want ErrTooMany", err)
	}
	o.MaxObjectBytes = 1 << 20
	s2 := openStore(t, o)
	defer s2.Close()
	if err := s2.Put(t.Context(), "big", make([]byte, 1<<20+1)); !errors.Is(err, rados.ErrTooLarge) {
		t.Fatalf("Put beyond MaxObjectBytes = %v; want ErrTooLarge", err)
	}
	if err := s2.WriteAt(t.Context(), "big", []byte{1}, 1<<20); !errors.Is(err, rados.ErrTooLarge) {
		t.Fatalf("WriteAt beyond MaxObjectBytes = %v; want ErrTooLarge", err)
	}
}

// TestCephLargeObject: objects larger than one write step are still one
// atomic operation, and read back whole.
func TestCephLargeObject(t *testing.T) {
	testenv.Long(t)
	s := openStore(t, clusterOptions(t))
	defer s.Close()
	ctx := t.Context()
	size := rados.MaxWriteStep + 3<<20 + 17
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7 >> 3)
	}
	if err := s.Put(ctx, "large", data); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, size+10)
	n, err := s.ReadAt(ctx, "large", got, 0)
	if n != size || err == nil || !errors.Is(err, errEOF()) {
		t.Fatalf("ReadAt = %d, %v; want %d, io.EOF", n, err, size)
	}
	for i := range data {
		if got[i] != data[i] {
			t.Fatalf("byte %d differs", i)
		}
	}
	if err := s.Delete(ctx, "large"); err != nil {
		t.Fatal(err)
	}
}

// TestCephConnectErrors: each misconfiguration is reported as what it is,
// naming the field, within the connect timeout.
func TestCephConnectErrors(t *testing.T) {
	env := testenv.Ceph(t)
	dir := t.TempDir()
	badKey := filepath.Join(dir, "bad.keyring")
	os.WriteFile(badKey, []byte("[client.admin]\n\tkey = AQBfcWxnAAAAABAAbm90IGEgcmVhbCBrZXkgYXQgYWw=\n"), 0o600)
	good := rados.Options{ConnOptions: rados.ConnOptions{ConfFile: env["CEPH_CONF"], Keyring: env["CEPH_KEYRING"], ConnectTimeout: 5 * time.Second}, Pool: env["CEPH_POOL"]}
	tests := []struct {
		name      string
		mod       func(o *rados.Options)
		transient bool
		want      string
	}{
		{"missing keyring", func(o *rados.Options) { o.Keyring = filepath.Join(dir, "missing") }, false, "keyring: " + filepath.Join(dir, "missing")},
		{"wrong key", func(o *rados.Options) { o.Keyring = badKey }, false, "keyring"},
		{"unknown user", func(o *rados.Options) { o.User = "nobody" }, false, "keyring"},
		{"wrong pool", func(o *rados.Options) { o.Pool = "no-such-pool" }, false, `pool: "no-such-pool" does not exist`},
		{"unreachable monitor", func(o *rados.Options) {
			o.ConfFile, o.MonHost, o.ConnectTimeout = "", "127.0.0.1:1", 2*time.Second
		}, true, "mon_host: no monitor answered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good
			tt.mod(&o)
			start := time.Now()
			s, err := rados.Open(t.Context(), &o)
			took := time.Since(start)
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded")
			}
			t.Logf("%v (after %v)", err, took.Round(time.Millisecond))
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if errors.Is(err, backend.ErrUnavailable) != tt.transient || rados.IsConfig(err) == tt.transient {
				t.Errorf("transient = %v, config = %v; want transient %v", errors.Is(err, backend.ErrUnavailable), rados.IsConfig(err), tt.transient)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines")
			}
			if took > o.ConnectTimeout+5*time.Second {
				t.Errorf("took %v with connect timeout %v", took, o.ConnectTimeout)
			}
		})
	}
	// The context's deadline bounds connecting too.
	o := good
	o.ConfFile, o.MonHost, o.ConnectTimeout = "", "127.0.0.1:1", time.Minute
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	start := time.Now()
	if s, err := rados.Open(ctx, &o); err == nil {
		s.Close()
		t.Fatal("Open succeeded")
	}
	if took := time.Since(start); took > 6*time.Second {
		t.Errorf("Open with a 2s context took %v", took)
	}
}

func errEOF() error { return io.EOF }
