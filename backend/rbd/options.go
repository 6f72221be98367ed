package rbd

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/lunway/lunway/backend/rados"
)

// ErrConfig: the options are wrong (an unknown feature, a missing size for
// a new image, an unknown pool). Not transient.
var ErrConfig = rados.ErrConfig

// Defaults.
const (
	DefaultMaxInFlight      = 128
	DefaultSizePollInterval = 5 * time.Second
	DefaultObjectSizeBytes  = 4 << 20
	// MetadataNAA and MetadataSerial are the image-meta keys holding the
	// LUN's SCSI identity, so that every gateway serving the image
	// presents the same device.
	MetadataNAA    = "lunway.naa"
	MetadataSerial = "lunway.serial"
)

// Feature bits (librbd's RBD_FEATURE_*), for Options.Features.
var featureBits = map[string]uint64{
	"layering":       1 << 0,
	"striping":       1 << 1,
	"exclusive-lock": 1 << 2,
	"object-map":     1 << 3,
	"fast-diff":      1 << 4,
	"deep-flatten":   1 << 5,
	"journaling":     1 << 6,
}

// DefaultFeatures are the features of images Open creates: those of
// librbd's default, which let GET LBA STATUS use the object map.
var DefaultFeatures = []string{"layering", "exclusive-lock", "object-map", "fast-diff", "deep-flatten"}

// Options configure a Device. Zero fields take defaults.
type Options struct {
	rados.ConnOptions
	// Pool, Namespace and Image name the image; Pool and Image are
	// required. A Namespace that does not exist is created along with a
	// new image.
	Pool, Namespace, Image string

	// Create makes Open create a missing image of SizeBytes with Features
	// and ObjectSizeBytes. Without it a missing image is an error.
	Create bool
	// SizeBytes is the size of a new image.
	SizeBytes int64
	// Features of a new image; nil means DefaultFeatures.
	Features []string
	// ObjectSizeBytes is a new image's object size, a power of two from
	// 4 KiB to 32 MiB; zero means 4 MiB.
	ObjectSizeBytes int64

	// ReadOnly opens the image read-only.
	ReadOnly bool
	// ExclusiveLock takes the image's exclusive lock at open and keeps it
	// until Close (librbd's managed lock: it is not handed over to other
	// clients that ask). Open fails with blockdev.ErrInUse, naming the
	// holder, while another client holds it. The image needs the
	// exclusive-lock feature.
	ExclusiveLock bool

	// LogicalBlockSize is 512 (default) or 4096; PhysicalBlockSize is a
	// power-of-two multiple of it, 4096 by default.
	LogicalBlockSize, PhysicalBlockSize int
	// MaxInFlight bounds the requests in flight; zero means
	// DefaultMaxInFlight.
	MaxInFlight int
	// IOTimeout bounds how long a request waits for the cluster before it
	// fails with blockdev.ErrUnavailable (the SCSI layer answers BUSY and
	// the initiator retries). Zero means ConnOptions.OpTimeout (30 s by
	// default); librados' own operation timeout is set to the same.
	IOTimeout time.Duration
	// SizePollInterval is how often the image's size is re-read to notice
	// resizes made elsewhere (rbd resize); zero means
	// DefaultSizePollInterval, negative disables.
	SizePollInterval time.Duration
	// OnResize, when set, is called (from the poller's goroutine, never
	// concurrently with itself) after the size changed other than through
	// Resize: the SCSI layer raises CAPACITY DATA HAS CHANGED.
	OnResize func(sizeBytes int64)
	// Logger receives the device's logs; nil discards them.
	Logger *slog.Logger
}

// Validate reports whether the options are usable.
func (o *Options) Validate() error {
	if err := o.ConnOptions.Validate(); err != nil {
		return err
	}
	if o.Pool == "" {
		return rados.OptionErr("pool", "required")
	}
	if o.Image == "" || strings.ContainsAny(o.Image, "/@ \x00") || len(o.Image) > 200 {
		return rados.OptionErr("image", "%q is not an RBD image name", o.Image)
	}
	if strings.ContainsAny(o.Namespace, "/@ \x00") || len(o.Namespace) > 64 {
		return rados.OptionErr("namespace", "%q is not an RBD namespace", o.Namespace)
	}
	if o.Create {
		if o.SizeBytes <= 0 {
			return rados.OptionErr("size", "required to create image %s", o.Image)
		}
		if _, err := Features(o.Features); err != nil {
			return err
		}
		if s := o.ObjectSizeBytes; s != 0 && (s < 4<<10 || s > 32<<20 || s&(s-1) != 0) {
			return rados.OptionErr("object_size", "%d is not a power of two from 4 KiB to 32 MiB", s)
		}
	}
	lbs, pbs := o.LogicalBlockSize, o.PhysicalBlockSize
	if lbs == 0 {
		lbs = 512
	}
	if pbs == 0 {
		pbs = max(4096, lbs)
	}
	if lbs != 512 && lbs != 4096 {
		return fmt.Errorf("%w: logical block size %d: must be 512 or 4096", ErrConfig, lbs)
	}
	if pbs < lbs || pbs&(pbs-1) != 0 || pbs > 1<<20 {
		return fmt.Errorf("%w: physical block size %d: must be a power-of-two multiple of %d up to 1 MiB", ErrConfig, pbs, lbs)
	}
	if o.SizeBytes%int64(lbs) != 0 {
		return fmt.Errorf("%w: size %d is not a multiple of the block size %d", ErrConfig, o.SizeBytes, lbs)
	}
	if o.MaxInFlight < 0 || o.MaxInFlight > 1<<16 || o.IOTimeout < 0 {
		return fmt.Errorf("%w: max in flight %d, I/O timeout %v: out of range", ErrConfig, o.MaxInFlight, o.IOTimeout)
	}
	return nil
}

// Features converts feature names to librbd's bits; nil means
// DefaultFeatures.
func Features(names []string) (uint64, error) {
	if names == nil {
		names = DefaultFeatures
	}
	var bits uint64
	for _, n := range names {
		b, ok := featureBits[n]
		if !ok {
			known := make([]string, 0, len(featureBits))
			for k := range featureBits {
				known = append(known, k)
			}
			slices.Sort(known)
			return 0, rados.OptionErr("features", "unknown feature %q (known: %s)", n, strings.Join(known, ", "))
		}
		bits |= b
	}
	if bits&featureBits["object-map"] != 0 && bits&featureBits["exclusive-lock"] == 0 {
		return 0, rados.OptionErr("features", "object-map needs exclusive-lock")
	}
	if bits&featureBits["fast-diff"] != 0 && bits&featureBits["object-map"] == 0 {
		return 0, rados.OptionErr("features", "fast-diff needs object-map")
	}
	return bits, nil
}

func (o Options) withDefaults() Options {
	o.ConnOptions.OpTimeout = max(o.ConnOptions.OpTimeout, 0)
	if o.IOTimeout == 0 {
		o.IOTimeout = o.ConnOptions.OpTimeout
	}
	if o.IOTimeout == 0 {
		o.IOTimeout = rados.DefaultOpTimeout
	}
	if o.ConnOptions.OpTimeout == 0 {
		o.ConnOptions.OpTimeout = o.IOTimeout
	}
	if o.LogicalBlockSize == 0 {
		o.LogicalBlockSize = 512
	}
	if o.PhysicalBlockSize == 0 {
		o.PhysicalBlockSize = max(4096, o.LogicalBlockSize)
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.SizePollInterval == 0 {
		o.SizePollInterval = DefaultSizePollInterval
	}
	if o.ObjectSizeBytes == 0 {
		o.ObjectSizeBytes = DefaultObjectSizeBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
