package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/lunway/lunway/cmd/lunway/internal/api"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"golang.org/x/term"
)

// wireOf converts a configuration value to its JSON request form.
func wireOf(v any) (any, error) {
	w, err := api.WireValue(v)
	if err != nil {
		return nil, fmt.Errorf("encoding the request: %w", err)
	}
	return w, nil
}

// Targets.

func newTargetCmd(f *adminFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "target",
		Aliases: []string{"targets"},
		Short:   "List, add, change and remove iSCSI targets",
		Long:    "List, add, change and remove iSCSI targets of the running daemon. Changes are live and saved to its configuration file.",
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List targets",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var ts []api.Target
			if err := f.call(cmd, "GET", "/targets", nil, &ts); err != nil {
				return err
			}
			return f.emit(cmd, ts, func(w io.Writer) {
				fmt.Fprintln(w, "NAME\tALIAS\tLUNS\tSESSIONS\tPORTAL GROUPS\tACL\tCHAP")
				for _, t := range ts {
					acl := "open"
					if n := len(t.ACL.Initiators) + len(t.ACL.Networks); n > 0 {
						acl = fmt.Sprintf("%d entries", n)
					}
					chap := "-"
					if t.CHAP != nil {
						chap = t.CHAP.User
						if t.CHAP.MutualUser != "" {
							chap += " (mutual)"
						}
					}
					pgs := "all"
					if len(t.PortalGroups) > 0 {
						pgs = strings.Trim(fmt.Sprint(t.PortalGroups), "[]")
					}
					fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\t%s\t%s\n", t.Name, orDash(t.Alias), len(t.LUNs), t.Sessions, pgs, acl, chap)
				}
			})
		},
	}
	show := &cobra.Command{
		Use:               "show TARGET",
		Short:             "Show a target and its LUNs",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: f.completeTargets,
		RunE: func(cmd *cobra.Command, args []string) error {
			var t api.Target
			if err := f.call(cmd, "GET", targetPath(args[0]), nil, &t); err != nil {
				return err
			}
			return f.emit(cmd, t, func(w io.Writer) {
				fmt.Fprintf(w, "Name\t%s\n", t.Name)
				fmt.Fprintf(w, "Alias\t%s\n", orDash(t.Alias))
				pgs := "all"
				if len(t.PortalGroups) > 0 {
					pgs = strings.Trim(fmt.Sprint(t.PortalGroups), "[]")
				}
				fmt.Fprintf(w, "Portal groups\t%s\n", pgs)
				fmt.Fprintf(w, "Initiators\t%s\n", dashList(t.ACL.Initiators))
				fmt.Fprintf(w, "Networks\t%s\n", dashList(t.ACL.Networks))
				if t.CHAP != nil {
					fmt.Fprintf(w, "CHAP user\t%s\n", t.CHAP.User)
					if t.CHAP.MutualUser != "" {
						fmt.Fprintf(w, "Mutual CHAP user\t%s\n", t.CHAP.MutualUser)
					}
				}
				fmt.Fprintf(w, "Sessions\t%d\n\n", t.Sessions)
				lunTable(w, t.LUNs)
			})
		},
	}
	var alias string
	var pgs []uint
	add := &cobra.Command{
		Use:   "add TARGET",
		Short: "Add a target (then add LUNs with `lunway lun add`)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tc := config.Target{Name: args[0], Alias: alias}
			for _, p := range pgs {
				tc.PortalGroups = append(tc.PortalGroups, uint16(p))
			}
			body, err := wireOf(tc)
			if err != nil {
				return err
			}
			var t api.Target
			if err := f.call(cmd, "POST", "/targets", body, &t); err != nil {
				return err
			}
			if f.output == "json" {
				return f.emit(cmd, t, nil)
			}
			f.done(cmd, "target %s added", t.Name)
			return nil
		},
	}
	add.Flags().StringVar(&alias, "alias", "", "TargetAlias sent at login")
	add.Flags().UintSliceVar(&pgs, "portal-group", nil, "tag of a portal group exposing the target (repeatable; default all)")
	var yes bool
	remove := &cobra.Command{
		Use:               "remove TARGET --yes",
		Short:             "Remove a target: its sessions end and its LUNs stop (their data is kept)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: f.completeTargets,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return usageError{fmt.Errorf("removing %s ends its sessions; pass --yes", args[0])}
			}
			if err := f.call(cmd, "DELETE", targetPath(args[0]), nil, nil); err != nil {
				return err
			}
			f.done(cmd, "target %s removed", args[0])
			return nil
		},
	}
	remove.Flags().BoolVar(&yes, "yes", false, "confirm")
	var setAlias string
	var setPGs []uint
	set := &cobra.Command{
		Use:               "set TARGET [--alias A] [--portal-group TAG]...",
		Short:             "Change a target's alias or portal groups (sessions stay)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: f.completeTargets,
		RunE: func(cmd *cobra.Command, args []string) error {
			var p api.TargetPatch
			if cmd.Flags().Changed("alias") {
				p.Alias = &setAlias
			}
			if cmd.Flags().Changed("portal-group") {
				tags := []uint16{}
				for _, v := range setPGs {
					tags = append(tags, uint16(v))
				}
				p.PortalGroups = &tags
			}
			if p.Alias == nil && p.PortalGroups == nil {
				return usageError{errors.New("nothing to change: give --alias or --portal-group")}
			}
			var t api.Target
			if err := f.call(cmd, "PATCH", targetPath(args[0]), p, &t); err != nil {
				return err
			}
			f.done(cmd, "target %s changed", t.Name)
			return nil
		},
	}
	set.Flags().StringVar(&setAlias, "alias", "", "new alias (empty removes it)")
	set.Flags().UintSliceVar(&setPGs, "portal-group", nil, "portal group tags (repeatable; --portal-group= for all)")
	cmd.AddCommand(list, show, add, remove, set)
	return cmd
}

func lunTable(w io.Writer, luns []api.LUN) {
	fmt.Fprintln(w, "TARGET\tLUN\tSIZE\tBACKEND\tWHERE\tHEALTH\tRO\tNAA")
	for _, l := range luns {
		where := ""
		switch l.BackendType {
		case "file":
			where, _ = l.Backend["path"].(string)
		case "blockmap":
			where, _ = l.Backend["volume"].(string)
			if st, ok := l.Backend["store"].(map[string]any); ok {
				where = fmt.Sprintf("%v:%s", st["type"], where)
			}
		case "rbd":
			where, _ = l.Backend["image"].(string)
		}
		health := l.Health
		if l.Pending {
			health += " (pending)"
		}
		ro := "-"
		if l.ReadOnly {
			ro = "yes"
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Target, l.LUN, config.Size(l.SizeBytes), l.BackendType,
			orDash(where), health, ro, orDash(l.NAA))
	}
}

// LUNs.

func newLUNCmd(f *adminFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "lun",
		Aliases: []string{"luns"},
		Short:   "List, add, resize, snapshot, clone and remove LUNs",
		Long:    "List, add, resize, snapshot, clone and remove the LUNs of the running daemon. Changes are live and saved to its configuration file.",
	}
	list := &cobra.Command{
		Use:               "list [TARGET]",
		Short:             "List LUNs (of every target, or of one)",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: f.completeTargets,
		RunE: func(cmd *cobra.Command, args []string) error {
			var luns []api.LUN
			if len(args) == 1 {
				if err := f.call(cmd, "GET", targetPath(args[0])+"/luns", nil, &luns); err != nil {
					return err
				}
			} else {
				var ts []api.Target
				if err := f.call(cmd, "GET", "/targets", nil, &ts); err != nil {
					return err
				}
				luns = []api.LUN{}
				for _, t := range ts {
					luns = append(luns, t.LUNs...)
				}
			}
			return f.emit(cmd, luns, func(w io.Writer) { lunTable(w, luns) })
		},
	}
	var (
		size, file, volume, storeDir, backend, serial, naa string
		readOnly, direct                                   bool
	)
	add := &cobra.Command{
		Use:   "add TARGET LUN --size SIZE (--file PATH | --volume NAME --store-dir DIR | --backend JSON|@FILE)",
		Short: "Add a LUN to a target",
		Long: `Add a LUN to a target. The backing is created when missing: a sparse file
(--file), a blockmap volume in a directory store (--volume, --store-dir), or
any backend section of the configuration file (--backend, as JSON or YAML,
inline or @FILE: e.g. '{"type": "rbd", "image": "vm1", "ceph": {...}}').
Relative paths are under the daemon's data directory. Initiators see
REPORTED LUNS DATA HAS CHANGED.`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: f.completeTargets,
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := parseLUN(args[1])
			if err != nil {
				return err
			}
			lc := config.LUN{LUN: n, ReadOnly: readOnly, Serial: serial, NAA: naa}
			if size != "" {
				if lc.Size, err = parseSizeArg(size); err != nil {
					return err
				}
			}
			kinds := 0
			for _, s := range []string{file, volume, backend} {
				if s != "" {
					kinds++
				}
			}
			if kinds != 1 {
				return usageError{errors.New("give exactly one of --file, --volume or --backend")}
			}
			switch {
			case file != "":
				lc.Backend = config.Backend{Type: "file", Path: file, Direct: direct}
			case volume != "":
				if storeDir == "" {
					return usageError{errors.New("--volume needs --store-dir (or use --backend for other stores)")}
				}
				lc.Backend = config.Backend{Type: "blockmap", Volume: volume, Store: &config.Store{Type: "dir", Path: storeDir}}
			default:
				if lc.Backend, err = parseBackendArg(backend); err != nil {
					return err
				}
			}
			body, err := wireOf(lc)
			if err != nil {
				return err
			}
			var l api.LUN
			if err := f.call(cmd, "POST", targetPath(args[0])+"/luns", body, &l); err != nil {
				return err
			}
			if f.output == "json" {
				return f.emit(cmd, l, nil)
			}
			f.done(cmd, "LUN %d of %s added: %s %s, naa %s", l.LUN, l.Target, config.Size(l.SizeBytes), l.BackendType, l.NAA)
			return nil
		},
	}
	fl := add.Flags()
	fl.StringVar(&size, "size", "", "capacity, e.g. 100GiB (required to create the backing)")
	fl.StringVar(&file, "file", "", "file or block device")
	fl.BoolVar(&direct, "direct", false, "open --file with O_DIRECT")
	fl.StringVar(&volume, "volume", "", "blockmap volume name")
	fl.StringVar(&storeDir, "store-dir", "", "directory store of --volume")
	fl.StringVar(&backend, "backend", "", "backend section as JSON/YAML, or @FILE")
	fl.BoolVar(&readOnly, "read-only", false, "refuse writes")
	fl.StringVar(&serial, "serial", "", "unit serial number (default: generated and kept)")
	fl.StringVar(&naa, "naa", "", "NAA 6 designator, 32 hex digits (default: generated and kept)")

	show := &cobra.Command{
		Use:               "show TARGET LUN",
		Short:             "Show one LUN",
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: f.completeTargets,
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := parseLUN(args[1])
			if err != nil {
				return err
			}
			var l api.LUN
			if err := f.call(cmd, "GET", lunPath(args[0], n), nil, &l); err != nil {
				return err
			}
			return f.emit(cmd, l, func(w io.Writer) {
				lunTable(w, []api.LUN{l})
				b, _ := yaml.Marshal(l.Backend)
				fmt.Fprintf(w, "\nbackend:\n%s", indent(string(b)))
			})
		},
	}
	var yes bool
	remove := &cobra.Command{
		Use:               "remove TARGET LUN --yes",
		Short:             "Remove a LUN from its target (its data is kept)",
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: f.completeTargets,
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := parseLUN(args[1])
			if err != nil {
				return err
			}
			if !yes {
				return usageError{fmt.Errorf("initiators lose LUN %d of %s; pass --yes", n, args[0])}
			}
			if err := f.call(cmd, "DELETE", lunPath(args[0], n), nil, nil); err != nil {
				return err
			}
			f.done(cmd, "LUN %d of %s removed (its data is kept)", n, args[0])
			return nil
		},
	}
	remove.Flags().BoolVar(&yes, "yes", false, "confirm")
	var allowShrink bool
	resize := &cobra.Command{
		Use:               "resize TARGET LUN SIZE",
		Short:             "Grow (or, with --allow-shrink, shrink) a LUN live",
		Long:              "Grow a LUN live; initiators see CAPACITY DATA HAS CHANGED and rescan. Shrinking drops the data beyond the new end of a file LUN and is refused for a blockmap volume while data is mapped there; it needs --allow-shrink.",
		Args:              cobra.ExactArgs(3),
		ValidArgsFunction: f.completeTargets,
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := parseLUN(args[1])
			if err != nil {
				return err
			}
			sz, err := parseSizeArg(args[2])
			if err != nil {
				return err
			}
			var l api.LUN
			if err := f.call(cmd, "POST", lunPath(args[0], n)+"/resize", api.ResizeRequest{Size: sz, AllowShrink: allowShrink}, &l); err != nil {
				return err
			}
			if f.output == "json" {
				return f.emit(cmd, l, nil)
			}
			f.done(cmd, "LUN %d of %s is now %s", n, args[0], config.Size(l.SizeBytes))
			return nil
		},
	}
	resize.Flags().BoolVar(&allowShrink, "allow-shrink", false, "permit a smaller size")
	var toTarget, toLUN string
	clone := &cobra.Command{
		Use:               "clone TARGET LUN SNAPSHOT NEW-VOLUME [--to TARGET --to-lun N]",
		Short:             "Create a volume from a snapshot of a blockmap LUN (and serve it)",
		Long:              "Create a writable volume from a snapshot of a blockmap LUN, in the same store, without copying data. With --to and --to-lun it is served as that LUN at once.",
		Args:              cobra.ExactArgs(4),
		ValidArgsFunction: f.completeTargets,
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := parseLUN(args[1])
			if err != nil {
				return err
			}
			req := api.CloneRequest{Snapshot: args[2], Volume: args[3], Target: toTarget}
			if (toTarget == "") != (toLUN == "") {
				return usageError{errors.New("--to and --to-lun go together")}
			}
			if toLUN != "" {
				m, err := parseLUN(toLUN)
				if err != nil {
					return err
				}
				req.LUN = &m
			}
			var out any
			if err := f.call(cmd, "POST", lunPath(args[0], n)+"/clone", req, &out); err != nil {
				return err
			}
			if f.output == "json" {
				return f.emit(cmd, out, nil)
			}
			if req.LUN != nil {
				f.done(cmd, "volume %s cloned from %s and served as LUN %d of %s", req.Volume, req.Snapshot, *req.LUN, req.Target)
			} else {
				f.done(cmd, "volume %s cloned from %s", req.Volume, req.Snapshot)
			}
			return nil
		},
	}
	clone.Flags().StringVar(&toTarget, "to", "", "serve the clone in this target")
	clone.Flags().StringVar(&toLUN, "to-lun", "", "as this LUN")
	cmd.AddCommand(list, show, add, remove, resize, newSnapshotCmd(f), clone)
	return cmd
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = "  " + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}

// parseBackendArg reads a backend section given as JSON or YAML, inline
// or from @FILE, strictly.
func parseBackendArg(s string) (config.Backend, error) {
	data := []byte(s)
	if name, ok := strings.CutPrefix(s, "@"); ok {
		var err error
		if data, err = os.ReadFile(name); err != nil {
			return config.Backend{}, usageError{err}
		}
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	var b config.Backend
	if err := dec.Decode(&b); err != nil {
		return config.Backend{}, usageError{fmt.Errorf("--backend: %v", err)}
	}
	return b, nil
}

func newSnapshotCmd(f *adminFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "snapshot",
		Aliases: []string{"snapshots"},
		Short:   "Create, list and delete snapshots of blockmap LUNs",
	}
	list := &cobra.Command{
		Use:               "list TARGET LUN",
		Short:             "List a LUN's snapshots",
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: f.completeTargets,
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := parseLUN(args[1])
			if err != nil {
				return err
			}
			var ss []api.Snapshot
			if err := f.call(cmd, "GET", lunPath(args[0], n)+"/snapshots", nil, &ss); err != nil {
				return err
			}
			return f.emit(cmd, ss, func(w io.Writer) {
				fmt.Fprintln(w, "NAME\tCREATED\tSIZE\tGENERATION")
				for _, s := range ss {
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\n", s.Name, s.Created.Format("2006-01-02 15:04:05"), config.Size(s.SizeBytes), s.Generation)
				}
			})
		},
	}
	create := &cobra.Command{
		Use:               "create TARGET LUN NAME",
		Short:             "Take a crash-consistent snapshot (every write completed before it is in it)",
		Args:              cobra.ExactArgs(3),
		ValidArgsFunction: f.completeTargets,
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := parseLUN(args[1])
			if err != nil {
				return err
			}
			var s api.Snapshot
			if err := f.call(cmd, "POST", lunPath(args[0], n)+"/snapshots", api.SnapshotRequest{Name: args[2]}, &s); err != nil {
				return err
			}
			if f.output == "json" {
				return f.emit(cmd, s, nil)
			}
			f.done(cmd, "snapshot %s of LUN %d of %s taken", s.Name, n, args[0])
			return nil
		},
	}
	del := &cobra.Command{
		Use:               "delete TARGET LUN NAME",
		Short:             "Delete a snapshot (refused while clones of it exist)",
		Args:              cobra.ExactArgs(3),
		ValidArgsFunction: f.completeTargets,
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := parseLUN(args[1])
			if err != nil {
				return err
			}
			if err := f.call(cmd, "DELETE", lunPath(args[0], n)+"/snapshots/"+url.PathEscape(args[2]), nil, nil); err != nil {
				return err
			}
			f.done(cmd, "snapshot %s deleted", args[2])
			return nil
		},
	}
	cmd.AddCommand(list, create, del)
	return cmd
}

// Portal groups.

func newPortalCmd(f *adminFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "portal",
		Aliases: []string{"portals"},
		Short:   "List and change portal groups, their listeners and ALUA states",
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List portal groups",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var pgs []api.PortalGroup
			if err := f.call(cmd, "GET", "/portal-groups", nil, &pgs); err != nil {
				return err
			}
			return f.emit(cmd, pgs, func(w io.Writer) {
				fmt.Fprintln(w, "TAG\tLISTEN\tBOUND\tALUA\tSESSIONS")
				for _, p := range pgs {
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d\n", p.Tag, dashList(p.Listen), dashList(p.Addrs), p.ALUAState, p.Sessions)
				}
			})
		},
	}
	var alua string
	add := &cobra.Command{
		Use:   "add TAG ADDRESS...",
		Short: "Add a portal group listening on the addresses",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			tag, err := parseTag(args[0])
			if err != nil {
				return err
			}
			body, err := wireOf(config.Portal{Tag: tag, Listen: args[1:], ALUAState: alua})
			if err != nil {
				return err
			}
			var pg api.PortalGroup
			if err := f.call(cmd, "POST", "/portal-groups", body, &pg); err != nil {
				return err
			}
			f.done(cmd, "portal group %d listening on %s", pg.Tag, dashList(pg.Addrs))
			return nil
		},
	}
	add.Flags().StringVar(&alua, "alua", "", "ALUA state (default active-optimized)")
	var yes bool
	remove := &cobra.Command{
		Use:   "remove TAG --yes",
		Short: "Remove a portal group: its listeners close and its sessions end",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tag, err := parseTag(args[0])
			if err != nil {
				return err
			}
			if !yes {
				return usageError{fmt.Errorf("removing portal group %d ends its sessions; pass --yes", tag)}
			}
			if err := f.call(cmd, "DELETE", fmt.Sprintf("/portal-groups/%d", tag), nil, nil); err != nil {
				return err
			}
			f.done(cmd, "portal group %d removed", tag)
			return nil
		},
	}
	remove.Flags().BoolVar(&yes, "yes", false, "confirm")
	setALUA := &cobra.Command{
		Use:       "alua TAG STATE",
		Short:     "Set a portal group's ALUA state (initiators see ASYMMETRIC ACCESS STATE CHANGED)",
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"active-optimized", "active-nonoptimized", "standby", "unavailable", "transitioning"},
		RunE: func(cmd *cobra.Command, args []string) error {
			tag, err := parseTag(args[0])
			if err != nil {
				return err
			}
			if err := f.call(cmd, "PATCH", fmt.Sprintf("/portal-groups/%d", tag), api.PortalGroupPatch{ALUAState: args[1]}, nil); err != nil {
				return err
			}
			f.done(cmd, "portal group %d is %s", tag, args[1])
			return nil
		},
	}
	listen := &cobra.Command{
		Use:   "listen TAG ADDRESS",
		Short: "Add a listening address to a portal group",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			tag, err := parseTag(args[0])
			if err != nil {
				return err
			}
			var pg api.PortalGroup
			if err := f.call(cmd, "POST", fmt.Sprintf("/portal-groups/%d/listen", tag), api.ListenRequest{Address: args[1]}, &pg); err != nil {
				return err
			}
			f.done(cmd, "portal group %d listening on %s", tag, dashList(pg.Addrs))
			return nil
		},
	}
	unlisten := &cobra.Command{
		Use:   "unlisten TAG ADDRESS",
		Short: "Stop listening on an address (sessions through it stay; drop them with `lunway session drop`)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			tag, err := parseTag(args[0])
			if err != nil {
				return err
			}
			if err := f.call(cmd, "DELETE", fmt.Sprintf("/portal-groups/%d/listen/%s", tag, url.PathEscape(args[1])), nil, nil); err != nil {
				return err
			}
			f.done(cmd, "portal group %d no longer listens on %s", tag, args[1])
			return nil
		},
	}
	cmd.AddCommand(list, add, remove, setALUA, listen, unlisten)
	return cmd
}

// ACLs.

// isISCSIName tells initiator names from networks in `acl add/remove`.
func isISCSIName(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "iqn.") || strings.HasPrefix(l, "eui.") || strings.HasPrefix(l, "naa.")
}

func newACLCmd(f *adminFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "acl",
		Short: "Show and change who may log into a target",
		Long: `Show and change who may log into a target: initiator names and source
networks. An initiator may log in when it matches both lists that are
non-empty; empty lists allow everyone. Sessions already logged in stay
(drop them with ` + "`lunway session drop`" + ` if they must go).`,
	}
	show := &cobra.Command{
		Use:               "show TARGET",
		Short:             "Show a target's ACL",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: f.completeTargets,
		RunE: func(cmd *cobra.Command, args []string) error {
			var acl api.ACL
			if err := f.call(cmd, "GET", targetPath(args[0])+"/acl", nil, &acl); err != nil {
				return err
			}
			return f.emit(cmd, acl, func(w io.Writer) {
				if len(acl.Initiators)+len(acl.Networks) == 0 {
					fmt.Fprintln(w, "open: every initiator may log in")
					return
				}
				fmt.Fprintln(w, "KIND\tALLOWED")
				for _, i := range acl.Initiators {
					fmt.Fprintf(w, "initiator\t%s\n", i)
				}
				for _, n := range acl.Networks {
					fmt.Fprintf(w, "network\t%s\n", n)
				}
			})
		},
	}
	add := &cobra.Command{
		Use:               "add TARGET (INITIATOR-NAME | NETWORK)...",
		Short:             "Allow initiator names (iqn./eui./naa.) or networks (CIDR or address)",
		Args:              cobra.MinimumNArgs(2),
		ValidArgsFunction: f.completeTargets,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, e := range args[1:] {
				var err error
				if isISCSIName(e) {
					err = f.call(cmd, "POST", targetPath(args[0])+"/acl/initiators", api.InitiatorRequest{Initiator: e}, nil)
				} else {
					err = f.call(cmd, "POST", targetPath(args[0])+"/acl/networks", api.NetworkRequest{Network: e}, nil)
				}
				if err != nil {
					return fmt.Errorf("%s: %w", e, err)
				}
				f.done(cmd, "%s allowed on %s", e, args[0])
			}
			return nil
		},
	}
	remove := &cobra.Command{
		Use:               "remove TARGET (INITIATOR-NAME | NETWORK)...",
		Short:             "Remove initiator names or networks from the ACL",
		Args:              cobra.MinimumNArgs(2),
		ValidArgsFunction: f.completeTargets,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, e := range args[1:] {
				var err error
				if isISCSIName(e) {
					err = f.call(cmd, "DELETE", targetPath(args[0])+"/acl/initiators/"+url.PathEscape(e), nil, nil)
				} else {
					err = f.call(cmd, "DELETE", targetPath(args[0])+"/acl/networks?network="+url.QueryEscape(e), nil, nil)
				}
				if err != nil {
					return fmt.Errorf("%s: %w", e, err)
				}
				f.done(cmd, "%s removed from the ACL of %s", e, args[0])
			}
			return nil
		},
	}
	clear := &cobra.Command{
		Use:               "clear TARGET",
		Short:             "Empty the ACL: every initiator may log in",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: f.completeTargets,
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := wireOf(config.ACL{})
			if err != nil {
				return err
			}
			if err := f.call(cmd, "PUT", targetPath(args[0])+"/acl", body, nil); err != nil {
				return err
			}
			f.done(cmd, "the ACL of %s is empty: every initiator may log in", args[0])
			return nil
		},
	}
	cmd.AddCommand(show, add, remove, clear)
	return cmd
}

// CHAP.

// readSecretArg reads a secret from stdin: without echo from a terminal,
// otherwise the first line.
func readSecretArg(cmd *cobra.Command, prompt string) (string, error) {
	in := cmd.InOrStdin()
	if fd, ok := in.(interface{ Fd() uintptr }); ok && term.IsTerminal(int(fd.Fd())) {
		fmt.Fprint(cmd.ErrOrStderr(), prompt)
		b, err := term.ReadPassword(int(fd.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return "", err
		}
		return string(b), nil
	}
	line, err := bufio.NewReader(io.LimitReader(in, 1024)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	s := strings.TrimRight(line, "\r\n")
	if s == "" {
		return "", usageError{errors.New("no secret on standard input")}
	}
	return s, nil
}

func newCHAPCmd(f *adminFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "chap",
		Short: "Show, set and remove a target's CHAP credentials",
		Long: `Show, set and remove a target's CHAP credentials. Secrets are never
accepted on the command line (other users could read them in the process
list): give a file only root and the daemon's user can read (--secret-file;
the daemon refuses files others can read) or type them (--secret-stdin).
Sessions already logged in stay.`,
	}
	show := &cobra.Command{
		Use:               "show TARGET",
		Short:             "Show a target's CHAP user (secrets are never shown)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: f.completeTargets,
		RunE: func(cmd *cobra.Command, args []string) error {
			var ch api.CHAP
			if err := f.call(cmd, "GET", targetPath(args[0])+"/chap", nil, &ch); err != nil {
				return err
			}
			return f.emit(cmd, ch, func(w io.Writer) {
				fmt.Fprintf(w, "User\t%s\n", ch.User)
				fmt.Fprintf(w, "Secret\t%s\n", orDash(ch.SecretFile+ch.Secret))
				if ch.MutualUser != "" {
					fmt.Fprintf(w, "Mutual user\t%s\n", ch.MutualUser)
					fmt.Fprintf(w, "Mutual secret\t%s\n", orDash(ch.MutualSecretFile+ch.MutualSecret))
				}
			})
		},
	}
	var user, secretFile, mutualUser, mutualFile string
	var secretStdin, mutualStdin bool
	set := &cobra.Command{
		Use:               "set TARGET --user USER (--secret-file FILE | --secret-stdin) [--mutual-user U (--mutual-secret-file F | --mutual-secret-stdin)]",
		Short:             "Require CHAP for logins to a target",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: f.completeTargets,
		RunE: func(cmd *cobra.Command, args []string) error {
			if user == "" {
				return usageError{errors.New("--user is required")}
			}
			ch := config.CHAP{User: user, SecretFile: secretFile, MutualUser: mutualUser, MutualSecretFile: mutualFile}
			if secretStdin == (secretFile != "") {
				return usageError{errors.New("give exactly one of --secret-file and --secret-stdin")}
			}
			if secretStdin {
				s, err := readSecretArg(cmd, "CHAP secret: ")
				if err != nil {
					return err
				}
				ch.Secret = s
			}
			if mutualUser != "" {
				if mutualStdin == (mutualFile != "") {
					return usageError{errors.New("--mutual-user needs exactly one of --mutual-secret-file and --mutual-secret-stdin")}
				}
				if mutualStdin {
					s, err := readSecretArg(cmd, "Mutual CHAP secret: ")
					if err != nil {
						return err
					}
					ch.MutualSecret = s
				}
			}
			body, err := wireOf(ch)
			if err != nil {
				return err
			}
			if err := f.call(cmd, "PUT", targetPath(args[0])+"/chap", body, nil); err != nil {
				return err
			}
			f.done(cmd, "CHAP required on %s for user %s", args[0], user)
			return nil
		},
	}
	fl := set.Flags()
	fl.StringVar(&user, "user", "", "CHAP name initiators must send")
	fl.StringVar(&secretFile, "secret-file", "", "file holding the secret (read by the daemon; mode 0600)")
	fl.BoolVar(&secretStdin, "secret-stdin", false, "read the secret from standard input")
	fl.StringVar(&mutualUser, "mutual-user", "", "name the target answers with (mutual CHAP)")
	fl.StringVar(&mutualFile, "mutual-secret-file", "", "file holding the mutual secret")
	fl.BoolVar(&mutualStdin, "mutual-secret-stdin", false, "read the mutual secret from standard input")
	remove := &cobra.Command{
		Use:               "remove TARGET",
		Short:             "Stop requiring CHAP",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: f.completeTargets,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.call(cmd, "DELETE", targetPath(args[0])+"/chap", nil, nil); err != nil {
				return err
			}
			f.done(cmd, "CHAP no longer required on %s", args[0])
			return nil
		},
	}
	cmd.AddCommand(show, set, remove)
	return cmd
}
