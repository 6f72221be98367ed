package disk

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/lunway/lunway/image"
	"github.com/lunway/lunway/image/qcow2"
	"github.com/lunway/lunway/image/raw"
	"github.com/lunway/lunway/image/vhd"
	"github.com/lunway/lunway/image/vhdx"
	"github.com/lunway/lunway/image/vmdk"
)

// OpenOptions configure Open. Nil means defaults.
type OpenOptions struct {
	// Format skips detection and opens the file as this format. Leave it
	// empty to detect by content, which is almost always right.
	Format image.Format
	// AllowAnyPath lets an image name backing files and extents anywhere.
	// By default they must lie in the directory of the image opened (or
	// below it): an untrusted image could otherwise name any file on the
	// host (say /etc/shadow as a flat extent) and have it copied to a LUN.
	AllowAnyPath bool
}

// Open opens the image at path read-only.
func Open(path string, opts *OpenOptions) (image.Reader, error) {
	var o OpenOptions
	if opts != nil {
		o = *opts
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	root := filepath.Dir(abs)
	if o.AllowAnyPath {
		root = ""
	}
	return openChain(abs, o.Format, nil, root)
}

// openChain opens path as the next image of chain (the absolute paths of
// the images that lead to it). Files it names must lie under root, unless
// root is empty.
func openChain(path string, format image.Format, chain []string, root string) (image.Reader, error) {
	if slices.Contains(chain, path) {
		return nil, image.Corruptf("backing chain loops back to %s", path)
	}
	if len(chain) >= image.MaxChainDepth {
		return nil, image.Limitf("backing chain deeper than %d images at %s", image.MaxChainDepth, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() && st.Mode()&os.ModeDevice == 0 {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file or block device: %w", path, image.ErrFormat)
	}
	size := st.Size()
	if st.Mode()&os.ModeDevice != 0 {
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, err
		}
	}
	res := &resolver{dir: filepath.Dir(path), root: root, chain: append(slices.Clip(chain), path)}
	r, err := OpenReader(f, size, format, res)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &fileReader{Reader: r, f: f}, nil
}

// OpenReader opens the image in r (size bytes) as format, or detects the
// format when it is "". res resolves the files the image names and may be
// nil.
func OpenReader(r io.ReaderAt, size int64, format image.Format, res image.Resolver) (image.Reader, error) {
	if format == "" {
		f, err := image.Detect(r, size)
		if err != nil {
			return nil, err
		}
		format = f
	}
	switch format {
	case image.Raw:
		return raw.Open(r, size)
	case image.QCOW2:
		return qcow2.Open(r, size, res)
	case image.VMDK:
		return vmdk.Open(r, size, res)
	case image.VHD:
		return vhd.Open(r, size)
	case image.VHDX:
		return vhdx.Open(r, size)
	}
	return nil, image.Unsupportedf("format %q", format)
}

// fileReader closes the file under a Reader.
type fileReader struct {
	image.Reader
	f *os.File
}

func (r *fileReader) Close() error {
	return errors.Join(r.Reader.Close(), r.f.Close())
}

// resolver opens the files named by the image at the end of chain.
type resolver struct {
	dir   string
	root  string // files must lie under root; "" allows any
	chain []string
}

// ErrOutsideDir: an image names a file outside the directory of the image
// opened (see OpenOptions.AllowAnyPath).
var ErrOutsideDir = errors.New("disk: file named by the image lies outside its directory")

func (r *resolver) path(name string) (string, error) {
	if name == "" || strings.Contains(name, "://") || strings.HasPrefix(name, "json:") || strings.ContainsRune(name, 0) {
		return "", image.Unsupportedf("file name %q: only plain file names are supported", name)
	}
	if !filepath.IsAbs(name) {
		name = filepath.Join(r.dir, name)
	}
	name = filepath.Clean(name)
	if r.root != "" {
		// Resolve symbolic links so that a link cannot lead outside.
		real, err := filepath.EvalSymlinks(name)
		if err != nil {
			return "", err
		}
		root, err := filepath.EvalSymlinks(r.root)
		if err != nil {
			return "", err
		}
		if rel, err := filepath.Rel(root, real); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return "", fmt.Errorf("%w: %q (allow with AllowAnyPath)", ErrOutsideDir, name)
		}
	}
	return name, nil
}

// OpenBacking implements image.Resolver.
func (r *resolver) OpenBacking(name string, format image.Format) (image.Reader, error) {
	p, err := r.path(name)
	if err != nil {
		return nil, err
	}
	return openChain(p, format, r.chain, r.root)
}

// OpenFile implements image.Resolver.
func (r *resolver) OpenFile(name string) (image.File, int64, error) {
	p, err := r.path(name)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}
