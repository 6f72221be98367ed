package disk_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/disk"
	"github.com/lunway/lunway/image/internal/imagetest"
)

// TestCreateOpen writes an image of every format and subformat with
// Create and reads it back with Open (format detected by content).
func TestCreateOpen(t *testing.T) {
	cases := []disk.CreateOptions{
		{Format: image.Raw},
		{Format: image.QCOW2},
		{Format: image.QCOW2, QCOW2Version: 2, ClusterSize: 4096},
		{Format: image.VMDK},
		{Format: image.VMDK, Subformat: "streamOptimized"},
		{Format: image.VMDK, Subformat: "monolithicFlat"},
		{Format: image.VHD},
		{Format: image.VHD, Subformat: "fixed"},
		{Format: image.VHDX, ClusterSize: 1 << 20},
		{Format: image.VHDX, Subformat: "fixed"},
	}
	const size = 3<<20 + 512
	data := imagetest.RandomSparse(size, 0.3, 1)
	for _, o := range cases {
		t.Run(string(o.Format)+"-"+o.Subformat, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "d.img")
			w, err := disk.Create(p, size, &o)
			if err != nil {
				t.Fatal(err)
			}
			for off := int64(0); off < size; off += 1 << 20 {
				if _, err := w.WriteAt(data[off:min(off+1<<20, size)], off); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			r, err := disk.Open(p, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.Format() != o.Format {
				t.Fatalf("detected %v", r.Format())
			}
			got := imagetest.ReadAll(t, r)
			imagetest.Equal(t, "read back", got[:size], data)
		})
	}
	if _, err := disk.Create(filepath.Join(t.TempDir(), "x"), 1<<20, &disk.CreateOptions{Format: image.VHD, Subformat: "sparse"}); !errors.Is(err, image.ErrUnsupported) {
		t.Fatalf("bad subformat: %v", err)
	}
}

// TestPathsConfined checks that images cannot name files outside their
// directory unless AllowAnyPath is set.
func TestPathsConfined(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "images")
	if err := os.MkdirAll(filepath.Join(dir, "base"), 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(root, "secret.raw")
	if err := os.WriteFile(secret, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "base", "ok.raw"), make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "link.raw")); err != nil {
		t.Fatal(err)
	}
	desc := func(name, extent string) string {
		p := filepath.Join(dir, name)
		text := "# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 2048 FLAT \"" + extent + "\" 0\n"
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name, extent string
		ok           bool
	}{
		{"below", "base/ok.raw", true},
		{"parent", "../secret.raw", false},
		{"absolute", secret, false},
		{"symlink out", "link.raw", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := desc(tc.name+".vmdk", tc.extent)
			r, err := disk.Open(p, nil)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				r.Close()
				return
			}
			if !errors.Is(err, disk.ErrOutsideDir) {
				t.Fatalf("err %v, want ErrOutsideDir", err)
			}
			r, err = disk.Open(p, &disk.OpenOptions{AllowAnyPath: true})
			if err != nil {
				t.Fatalf("with AllowAnyPath: %v", err)
			}
			r.Close()
		})
	}
}
