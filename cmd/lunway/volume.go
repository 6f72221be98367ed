package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lunway/lunway/backend"
	"github.com/lunway/lunway/backend/dir"
	"github.com/lunway/lunway/blockdev"
	"github.com/lunway/lunway/blockmap"
	"github.com/lunway/lunway/blockmap/format"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"github.com/lunway/lunway/cmd/lunway/internal/daemon"
	"github.com/lunway/lunway/image/transfer"
	"github.com/spf13/cobra"
)

// volumeHelp says how the volume commands name a volume.
const volumeHelp = `A volume is named as NAME with --store STORE-DIR, as volume:STORE-DIR/NAME,
or as lun:IQN/N (the blockmap volume of a LUN in the daemon's configuration,
--config FILE; its store may be a directory, RADOS or S3). The commands work
offline: a directory store is locked while a daemon serves it, and they refuse
to run then (stop the daemon first).`

// sizeText formats a byte count for people: "1.5 GiB (1610612736 bytes)"
// when it is not a round binary size.
func sizeText(n int64) string {
	h := transfer.Bytes(n)
	if n < 1024 || strings.HasSuffix(h, ".0 KiB") && n%(1<<10) == 0 || strings.HasSuffix(h, ".0 MiB") && n%(1<<20) == 0 ||
		strings.HasSuffix(h, ".0 GiB") && n%(1<<30) == 0 || strings.HasSuffix(h, ".0 TiB") && n%(1<<40) == 0 {
		return h
	}
	return fmt.Sprintf("%s (%d bytes)", h, n)
}

type volumeFlags struct {
	ep     endpointFlags
	output string
}

func (f *volumeFlags) add(cmd *cobra.Command, listing bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.ep.store, "store", "", "directory store of the volume")
	fl.StringVar(&f.ep.config, "config", "", "daemon configuration file, for lun:IQN/N")
	fl.StringVar(&f.ep.dataDir, "data-dir", "", "daemon data directory, for lun:IQN/N")
	f.ep.lun = -1
	if listing {
		fl.StringVarP(&f.output, "output", "o", "text", "text or json")
	}
}

// openedStore is a store opened for the volume commands.
type openedStore struct {
	store   backend.Store
	where   string // for messages
	release func()
}

// openVolumeStore resolves a volume argument to its store and name.
func openVolumeStore(ctx context.Context, arg string, f *volumeFlags) (*openedStore, string, error) {
	spec, err := parseEndpoint(arg, &f.ep)
	if err != nil {
		return nil, "", usageError{err}
	}
	switch spec.kind {
	case "volume":
		st, err := openDirStore(ctx, spec.store)
		return st, spec.volume, err
	case "lun":
		cfg, _, err := loadServeConfig(&serveFlags{config: f.ep.config, dataDir: f.ep.dataDir})
		if err != nil {
			return nil, "", err
		}
		st, name, release, err := daemon.OpenLUNStoreOffline(ctx, cfg, spec.iqn, spec.lun, nil)
		if err != nil {
			var fe *config.FieldError
			switch {
			case errors.Is(err, blockdev.ErrInUse):
				return nil, "", storeErr(spec.String(), err)
			case errors.As(err, &fe), errors.Is(err, daemon.ErrNoSuchLUN), errors.Is(err, daemon.ErrNotVolume):
				return nil, "", usageError{fmt.Errorf("%s: %w", spec, err)}
			}
			return nil, "", fmt.Errorf("%s: %w", spec, err)
		}
		return &openedStore{store: st, where: spec.String(), release: release}, name, nil
	}
	return nil, "", usageError{fmt.Errorf("%s is not a volume: use NAME with --store DIR, volume:DIR/NAME or lun:IQN/N", spec)}
}

func openDirStore(ctx context.Context, path string) (*openedStore, error) {
	if st, err := os.Stat(path); err != nil || !st.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		}
		return nil, usageError{fmt.Errorf("store %s: %w", path, err)}
	}
	st, err := dir.Open(ctx, path, nil)
	if err != nil {
		return nil, storeErr(path, err)
	}
	return &openedStore{store: st, where: path, release: func() { st.Close() }}, nil
}

// openVol opens a volume of the store; read-only volumes write nothing.
func openVol(ctx context.Context, s *openedStore, name string, readOnly bool) (*blockmap.Volume, error) {
	vol, err := blockmap.Open(ctx, s.store, name, &blockmap.Options{ReadOnly: readOnly, DisableBackground: readOnly})
	if err != nil {
		if errors.Is(err, blockmap.ErrNotFound) {
			return nil, usageError{fmt.Errorf("no volume %s in %s", name, s.where)}
		}
		if errors.Is(err, blockmap.ErrInvalidName) {
			return nil, usageError{err}
		}
		return nil, fmt.Errorf("open volume %s: %w", name, err)
	}
	return vol, nil
}

// withVolume runs fn on an opened volume and closes everything.
func withVolume(cmd *cobra.Command, f *volumeFlags, arg string, readOnly bool, fn func(ctx context.Context, s *openedStore, v *blockmap.Volume) error) error {
	ctx, stop := signalContext(cmd)
	defer stop()
	s, name, err := openVolumeStore(ctx, arg, f)
	if err != nil {
		return err
	}
	defer s.release()
	v, err := openVol(ctx, s, name, readOnly)
	if err != nil {
		return err
	}
	err = fn(ctx, s, v)
	if cerr := v.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close volume %s: %w", name, cerr)
	}
	return err
}

func newVolumeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "volume",
		Short: "Offline tools for blockmap volumes: create, info, check, snapshot, clone, resize, list, delete",
		Long:  "Offline tools for blockmap volumes.\n\n" + volumeHelp,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usageError{errors.New("missing subcommand: create, info, check, snapshot, clone, resize, list or delete")}
		},
	}
	cmd.AddCommand(newVolumeCreateCmd(), newVolumeInfoCmd(), newCheckCmd("check"), newVolumeSnapshotCmd(),
		newVolumeCloneCmd(), newVolumeResizeCmd(), newVolumeListCmd(), newVolumeDeleteCmd())
	return cmd
}

func newVolumeCreateCmd() *cobra.Command {
	var (
		f                   volumeFlags
		size, segment       string
		blockSize, physical int
	)
	cmd := &cobra.Command{
		Use:   "create NAME --size SIZE",
		Short: "Create an empty thin volume",
		Long:  "Create an empty thin volume of --size bytes (e.g. 100GiB).\n\n" + volumeHelp,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if size == "" {
				return usageError{errors.New("--size is required")}
			}
			n, err := parseSizeFlag(size)
			if err != nil || n <= 0 || n%int64(blockSize) != 0 {
				return usageError{fmt.Errorf("--size %q: a positive multiple of the %d-byte block size", size, blockSize)}
			}
			o := &blockmap.Options{LogicalBlockSize: blockSize, PhysicalBlockSize: physical}
			if segment != "" {
				if o.SegmentSize, err = parseSizeFlag(segment); err != nil {
					return usageError{fmt.Errorf("--segment-size: %w", err)}
				}
			}
			if err := o.Validate(); err != nil {
				return usageError{err}
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			s, name, err := openVolumeStore(ctx, args[0], &f)
			if err != nil {
				return err
			}
			defer s.release()
			v, err := blockmap.Create(ctx, s.store, name, n, o)
			if err != nil {
				if errors.Is(err, blockmap.ErrExists) || errors.Is(err, blockmap.ErrInvalidName) {
					return usageError{err}
				}
				return err
			}
			if err := v.Close(); err != nil {
				return err
			}
			fmt.Printf("created volume %s in %s: %s\n", name, s.where, sizeText(n))
			return nil
		},
	}
	f.add(cmd, false)
	cmd.Flags().StringVar(&size, "size", "", "virtual size (e.g. 100GiB)")
	cmd.Flags().IntVar(&blockSize, "block-size", 512, "logical block size: 512 or 4096")
	cmd.Flags().IntVar(&physical, "physical-block-size", 0, "physical block size reported to initiators (default 4096)")
	cmd.Flags().StringVar(&segment, "segment-size", "", "log segment size (default 4MiB)")
	return cmd
}

// volumeReport is what `volume info` prints.
type volumeReport struct {
	Name              string          `json:"name"`
	Store             string          `json:"store"`
	ID                string          `json:"id"`
	FormatVersion     int             `json:"format_version"`
	SizeBytes         int64           `json:"size_bytes"`
	LogicalBlockSize  int             `json:"logical_block_size"`
	PhysicalBlockSize int             `json:"physical_block_size"`
	SegmentSize       int             `json:"segment_size"`
	Created           time.Time       `json:"created"`
	Origin            string          `json:"origin,omitempty"`
	Generation        uint64          `json:"generation"`
	UsedBytes         int64           `json:"used_bytes"`
	LiveBytes         int64           `json:"live_bytes"`
	StoredBytes       int64           `json:"stored_bytes"`
	Segments          int             `json:"segments"`
	Snapshots         []snapshotEntry `json:"snapshots"`
	Clones            []string        `json:"clones"`
	// WriteAmplification is backend bytes over guest bytes written over
	// the volume's life (0 before any write).
	WriteAmplification float64 `json:"write_amplification"`
	LifetimeGuestBytes int64   `json:"lifetime_guest_bytes"`
	LifetimeStoreBytes int64   `json:"lifetime_backend_bytes"`
}

type snapshotEntry struct {
	Name       string    `json:"name"`
	Created    time.Time `json:"created"`
	SizeBytes  int64     `json:"size_bytes"`
	Generation uint64    `json:"generation"`
}

// mappedBytes walks the volume's allocation.
func mappedBytes(ctx context.Context, v *blockmap.Volume) (int64, error) {
	size := v.Info().SizeBytes
	var n int64
	for pos := int64(0); pos < size; {
		exts, err := v.AllocationStatus(ctx, pos, size-pos)
		if err != nil {
			return 0, err
		}
		if len(exts) == 0 {
			return 0, fmt.Errorf("allocation status at %d: no extent", pos)
		}
		for _, e := range exts {
			if e.State == blockdev.Mapped {
				n += e.Len
			}
			pos = e.Off + e.Len
		}
	}
	return n, nil
}

// clonesOf lists the volumes cloned from snapshots of vol (markers whose
// clone still exists).
func clonesOf(ctx context.Context, st backend.Store, vol string) ([]string, error) {
	var out []string
	prefix := format.ClonePrefix(vol)
	err := st.List(ctx, prefix, func(oi backend.ObjectInfo) error {
		name := strings.TrimPrefix(oi.Name, prefix)
		if _, err := st.Stat(ctx, format.SuperblockName(name)); err == nil {
			out = append(out, name)
		} else if !errors.Is(err, backend.ErrNotFound) {
			return err
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

func describe(ctx context.Context, s *openedStore, v *blockmap.Volume) (volumeReport, error) {
	d := v.Describe()
	st := v.Stats()
	r := volumeReport{
		Name: d.Name, Store: s.where, ID: hex.EncodeToString(d.ID[:]), FormatVersion: format.Version,
		SizeBytes: d.SizeBytes, LogicalBlockSize: d.LogicalBlockSize, PhysicalBlockSize: d.PhysicalBlockSize,
		SegmentSize: d.SegmentSize, Created: d.Created.UTC(), Origin: d.Origin, Generation: d.Generation,
		LiveBytes: st.LiveBytes, StoredBytes: st.StoredBytes, Segments: st.Segments,
		LifetimeGuestBytes: st.LifetimeGuestBytes, LifetimeStoreBytes: st.LifetimeBackendBytes,
		Snapshots: []snapshotEntry{}, Clones: []string{},
	}
	if st.LifetimeGuestBytes > 0 {
		r.WriteAmplification = float64(st.LifetimeBackendBytes) / float64(st.LifetimeGuestBytes)
	}
	for _, sn := range d.Snapshots {
		r.Snapshots = append(r.Snapshots, snapshotEntry{Name: sn.Name, Created: sn.Created.UTC(), SizeBytes: sn.SizeBytes, Generation: sn.Generation})
	}
	var err error
	if r.UsedBytes, err = mappedBytes(ctx, v); err != nil {
		return r, err
	}
	clones, err := clonesOf(ctx, s.store, d.Name)
	if err != nil {
		return r, err
	}
	if clones != nil {
		r.Clones = clones
	}
	return r, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func checkOutput(o string) error {
	if o != "text" && o != "json" {
		return usageError{fmt.Errorf("-o %q: text or json", o)}
	}
	return nil
}

func newVolumeInfoCmd() *cobra.Command {
	var f volumeFlags
	cmd := &cobra.Command{
		Use:   "info NAME",
		Short: "Describe a volume: size, space used, segments, snapshots, clones, format, write amplification",
		Long:  "Describe a volume.\n\n" + volumeHelp,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(f.output); err != nil {
				return err
			}
			return flat(withVolume(cmd, &f, args[0], true, func(ctx context.Context, s *openedStore, v *blockmap.Volume) error {
				r, err := describe(ctx, s, v)
				if err != nil {
					return err
				}
				if f.output == "json" {
					return printJSON(os.Stdout, r)
				}
				printReport(os.Stdout, &r)
				return nil
			}))
		},
	}
	f.add(cmd, true)
	return cmd
}

func printReport(out io.Writer, r *volumeReport) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	pct := 0.0
	if r.SizeBytes > 0 {
		pct = 100 * float64(r.UsedBytes) / float64(r.SizeBytes)
	}
	fmt.Fprintf(w, "volume\t%s\n", r.Name)
	fmt.Fprintf(w, "store\t%s\n", r.Store)
	fmt.Fprintf(w, "id\t%s\n", r.ID)
	fmt.Fprintf(w, "format\tversion %d\n", r.FormatVersion)
	fmt.Fprintf(w, "size\t%s (%d blocks of %d bytes, physical %d)\n", sizeText(r.SizeBytes),
		r.SizeBytes/int64(max(1, r.LogicalBlockSize)), r.LogicalBlockSize, r.PhysicalBlockSize)
	fmt.Fprintf(w, "used\t%s mapped (%.1f%%)\n", transfer.Bytes(r.UsedBytes), pct)
	fmt.Fprintf(w, "stored\t%s in %d segments of %s (live %s)\n", transfer.Bytes(r.StoredBytes), r.Segments,
		transfer.Bytes(int64(r.SegmentSize)), transfer.Bytes(r.LiveBytes))
	fmt.Fprintf(w, "created\t%s\n", r.Created.Format(time.RFC3339))
	if r.Origin != "" {
		fmt.Fprintf(w, "origin\t%s (a clone)\n", r.Origin)
	}
	fmt.Fprintf(w, "generation\t%d\n", r.Generation)
	if len(r.Snapshots) == 0 {
		fmt.Fprintf(w, "snapshots\tnone\n")
	}
	for i, s := range r.Snapshots {
		label := ""
		if i == 0 {
			label = "snapshots"
		}
		fmt.Fprintf(w, "%s\t%s  %s  %s  generation %d\n", label, s.Name, s.Created.Format(time.RFC3339), sizeText(s.SizeBytes), s.Generation)
	}
	if len(r.Clones) == 0 {
		fmt.Fprintf(w, "clones\tnone\n")
	} else {
		fmt.Fprintf(w, "clones\t%s\n", strings.Join(r.Clones, ", "))
	}
	if r.LifetimeGuestBytes > 0 {
		fmt.Fprintf(w, "write amplification\t%.2f (guest %s, backend %s over the volume's life)\n",
			r.WriteAmplification, transfer.Bytes(r.LifetimeGuestBytes), transfer.Bytes(r.LifetimeStoreBytes))
	} else {
		fmt.Fprintf(w, "write amplification\t- (nothing written yet)\n")
	}
	w.Flush()
}

// newCheckCmd is `volume check` and, as `lunway check`, its alias.
func newCheckCmd(use string) *cobra.Command {
	var f volumeFlags
	cmd := &cobra.Command{
		Use:   use + " NAME",
		Short: "Verify a volume offline against its store (exit status 1 names the damaged object)",
		Long: `Verify a volume offline: every map page and extent reference must land in a
valid record of its segment (checksums included), nothing may lie beyond the end,
and each segment's live-byte accounting must add up, for the volume and each of
its snapshots. The volume is opened read-only; nothing is written.

Exit status: 0 when the volume is consistent (segments left over by a crash
are listed as leaked, which is harmless), 1 when it is damaged (the message
names the damaged object), 2 for usage errors.

` + volumeHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(f.output); err != nil {
				return err
			}
			return flat(withVolume(cmd, &f, args[0], true, func(ctx context.Context, s *openedStore, v *blockmap.Volume) error {
				rep, err := v.Check(ctx)
				if err != nil {
					if len(rep.Problems) > 1 {
						return fmt.Errorf("volume %s is damaged: %w (and %d more problems)", v.Name(), err, len(rep.Problems)-1)
					}
					return fmt.Errorf("volume %s is damaged: %w", v.Name(), err)
				}
				if f.output == "json" {
					return printJSON(os.Stdout, rep)
				}
				fmt.Printf("volume %s: ok (generation %d, %d map pages, %d extents, %s mapped, %d segments, %d snapshots)\n",
					v.Name(), rep.Generation, rep.Pages, rep.Extents, transfer.Bytes(rep.MappedBytes), rep.Segments, rep.Snapshots)
				if len(rep.Leaked) > 0 {
					fmt.Printf("%d leaked segments (left by a crash; reclaimed when the volume is next opened for writing): %s\n",
						len(rep.Leaked), strings.Join(rep.Leaked, " "))
				}
				return nil
			}))
		},
	}
	f.add(cmd, true)
	return cmd
}

func newVolumeSnapshotCmd() *cobra.Command {
	var (
		f   volumeFlags
		del bool
	)
	cmd := &cobra.Command{
		Use:   "snapshot NAME SNAPSHOT",
		Short: "Take (or with --delete, delete) a read-only snapshot of a volume",
		Long:  "Take a point-in-time, read-only snapshot of a stopped volume (no data is copied).\nWith --delete, delete the snapshot (refused while clones of it exist).\n\n" + volumeHelp,
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := format.ValidName(args[1]); err != nil {
				return usageError{err}
			}
			return flat(withVolume(cmd, &f, args[0], false, func(ctx context.Context, s *openedStore, v *blockmap.Volume) error {
				if del {
					if err := v.DeleteSnapshot(ctx, args[1]); err != nil {
						if errors.Is(err, blockmap.ErrNotFound) {
							return usageError{err}
						}
						if errors.Is(err, blockdev.ErrInUse) {
							return fmt.Errorf("snapshot %s@%s has clones; delete them first: %w", v.Name(), args[1], err)
						}
						return err
					}
					fmt.Printf("deleted snapshot %s@%s\n", v.Name(), args[1])
					return nil
				}
				if err := v.Snapshot(ctx, args[1]); err != nil {
					if errors.Is(err, blockmap.ErrExists) {
						return usageError{err}
					}
					return err
				}
				fmt.Printf("snapshot %s@%s taken\n", v.Name(), args[1])
				return nil
			}))
		},
	}
	f.add(cmd, false)
	cmd.Flags().BoolVar(&del, "delete", false, "delete the snapshot instead")
	return cmd
}

func newVolumeCloneCmd() *cobra.Command {
	var f volumeFlags
	cmd := &cobra.Command{
		Use:   "clone NAME@SNAPSHOT NEWNAME",
		Short: "Create a writable volume from a snapshot (no data is copied)",
		Long:  "Create volume NEWNAME, writable, from snapshot SNAPSHOT of volume NAME in the same store.\nThe snapshot cannot be deleted while the clone exists.\n\n" + volumeHelp,
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, snap, ok := strings.Cut(args[0], "@")
			if !ok || snap == "" {
				return usageError{fmt.Errorf("%q: want NAME@SNAPSHOT", args[0])}
			}
			if err := format.ValidName(args[1]); err != nil {
				return usageError{err}
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			s, name, err := openVolumeStore(ctx, src, &f)
			if err != nil {
				return flat(err)
			}
			defer s.release()
			v, err := blockmap.Clone(ctx, s.store, name, snap, args[1], nil)
			if err != nil {
				if errors.Is(err, blockmap.ErrNotFound) || errors.Is(err, blockmap.ErrExists) {
					return flat(usageError{err})
				}
				return flat(err)
			}
			if err := v.Close(); err != nil {
				return flat(err)
			}
			fmt.Printf("cloned %s@%s to %s\n", name, snap, args[1])
			return nil
		},
	}
	f.add(cmd, false)
	return cmd
}

func newVolumeResizeCmd() *cobra.Command {
	var (
		f    volumeFlags
		size string
	)
	cmd := &cobra.Command{
		Use:   "resize NAME --size SIZE",
		Short: "Grow a volume (shrinking is refused while data lies beyond the new end)",
		Long:  "Change a stopped volume's size. Growing exposes zeros; shrinking is refused while\nmapped data lies beyond the new end.\n\n" + volumeHelp,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := parseSizeFlag(size)
			if size == "" || err != nil || n <= 0 {
				return usageError{fmt.Errorf("--size %q: a positive size is required", size)}
			}
			return flat(withVolume(cmd, &f, args[0], false, func(ctx context.Context, s *openedStore, v *blockmap.Volume) error {
				old := v.Info().SizeBytes
				if bs := int64(v.Info().LogicalBlockSize); n%bs != 0 {
					return usageError{fmt.Errorf("--size %d is not a multiple of the %d-byte block size", n, bs)}
				}
				if err := v.Resize(ctx, n); err != nil {
					if errors.Is(err, blockdev.ErrInUse) {
						return fmt.Errorf("cannot shrink %s to %s: data lies beyond the new end (unmap it first)", v.Name(), sizeText(n))
					}
					return err
				}
				fmt.Printf("resized %s from %s to %s\n", v.Name(), sizeText(old), sizeText(n))
				return nil
			}))
		},
	}
	f.add(cmd, false)
	cmd.Flags().StringVar(&size, "size", "", "new size (e.g. 200GiB)")
	return cmd
}

// listEntry is one line of `volume list`.
type listEntry struct {
	Name      string `json:"name"`
	SizeBytes int64  `json:"size_bytes"`
	Snapshots int    `json:"snapshots"`
	Origin    string `json:"origin,omitempty"`
	Error     string `json:"error,omitempty"`
}

func newVolumeListCmd() *cobra.Command {
	var f volumeFlags
	cmd := &cobra.Command{
		Use:   "list [STORE-DIR]",
		Short: "List the volumes of a store",
		Long:  "List the volumes of a directory store (STORE-DIR or --store), with size, snapshots and origin.",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(f.output); err != nil {
				return err
			}
			path := f.ep.store
			if len(args) == 1 {
				if path != "" {
					return usageError{errors.New("give the store as an argument or with --store, not both")}
				}
				path = args[0]
			}
			if path == "" {
				return usageError{errors.New("which store? give STORE-DIR or --store")}
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			s, err := openDirStore(ctx, path)
			if err != nil {
				return flat(err)
			}
			defer s.release()
			names, err := blockmap.List(ctx, s.store)
			if err != nil {
				return flat(err)
			}
			entries := []listEntry{}
			for _, n := range names {
				e := listEntry{Name: n}
				v, err := blockmap.Open(ctx, s.store, n, &blockmap.Options{ReadOnly: true, DisableBackground: true})
				if err != nil {
					e.Error = err.Error()
				} else {
					d := v.Describe()
					e.SizeBytes, e.Snapshots, e.Origin = d.SizeBytes, len(d.Snapshots), d.Origin
					v.Close()
				}
				entries = append(entries, e)
			}
			if f.output == "json" {
				return printJSON(os.Stdout, entries)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tSIZE\tSNAPSHOTS\tORIGIN")
			for _, e := range entries {
				if e.Error != "" {
					fmt.Fprintf(w, "%s\t?\t?\terror: %s\n", e.Name, e.Error)
					continue
				}
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", e.Name, transfer.Bytes(e.SizeBytes), e.Snapshots, e.Origin)
			}
			return w.Flush()
		},
	}
	f.add(cmd, true)
	return cmd
}

func newVolumeDeleteCmd() *cobra.Command {
	var (
		f   volumeFlags
		yes bool
	)
	cmd := &cobra.Command{
		Use:   "delete NAME --yes",
		Short: "Delete a volume and its snapshots (refused while clones of it exist)",
		Long:  "Delete a stopped volume and all its snapshots. This cannot be undone; --yes confirms.\nRefused while a clone of one of its snapshots exists.\n\n" + volumeHelp,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return usageError{fmt.Errorf("refusing to delete %s without --yes (this cannot be undone)", args[0])}
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			s, name, err := openVolumeStore(ctx, args[0], &f)
			if err != nil {
				return flat(err)
			}
			defer s.release()
			if err := blockmap.Delete(ctx, s.store, name); err != nil {
				switch {
				case errors.Is(err, blockmap.ErrNotFound):
					return flat(usageError{fmt.Errorf("no volume %s in %s", name, s.where)})
				case errors.Is(err, blockdev.ErrInUse):
					return flat(fmt.Errorf("volume %s has clones; delete them first: %w", name, err))
				}
				return flat(err)
			}
			fmt.Printf("deleted volume %s from %s\n", name, s.where)
			return nil
		},
	}
	f.add(cmd, false)
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm the deletion")
	return cmd
}
