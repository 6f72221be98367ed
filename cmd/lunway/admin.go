package main

// The administration commands: thin clients of the management API
// (cmd/lunway/internal/api) of a running daemon. Tables for people by
// default, -o json for scripts.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lunway/lunway/cmd/lunway/internal/api"
	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"github.com/spf13/cobra"
)

// adminFlags say how to reach the daemon and how to print.
type adminFlags struct {
	socket    string
	dataDir   string
	config    string
	apiURL    string
	tokenFile string
	apiCA     string
	output    string
	timeout   time.Duration
}

// addAdminCommands adds the administration commands to root.
func addAdminCommands(root *cobra.Command) {
	f := &adminFlags{}
	for _, c := range []*cobra.Command{
		newStatusCmd(f), newHealthCmd(f), newTargetCmd(f), newLUNCmd(f), newPortalCmd(f),
		newACLCmd(f), newCHAPCmd(f), newSessionCmd(f),
	} {
		f.register(c)
		root.AddCommand(c)
	}
}

const adminHelp = `
The daemon is reached through its API socket: --socket, or api.socket of
--config, or DATA_DIR/lunway.sock of --data-dir (default ` + config.DefaultDataDir + `;
LUNWAY_SOCKET and LUNWAY_DATA_DIR set defaults). --api-url https://host:port
with --token-file (and --api-ca for a self-signed certificate) uses the TCP
listener instead (LUNWAY_API_URL, LUNWAY_TOKEN_FILE).`

func (f *adminFlags) register(c *cobra.Command) {
	p := c.PersistentFlags()
	p.StringVar(&f.socket, "socket", os.Getenv("LUNWAY_SOCKET"), "API socket of the daemon")
	p.StringVar(&f.dataDir, "data-dir", os.Getenv("LUNWAY_DATA_DIR"), "data directory of the daemon (its socket is DATA_DIR/lunway.sock)")
	p.StringVar(&f.config, "config", "", "the daemon's configuration file (to find its socket)")
	p.StringVar(&f.apiURL, "api-url", os.Getenv("LUNWAY_API_URL"), "https://host:port of the daemon's TCP API")
	p.StringVar(&f.tokenFile, "token-file", os.Getenv("LUNWAY_TOKEN_FILE"), "file holding the bearer token for --api-url")
	p.StringVar(&f.apiCA, "api-ca", "", "PEM certificates to trust for --api-url")
	p.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	p.DurationVar(&f.timeout, "timeout", 2*time.Minute, "how long to wait for the daemon")
	c.Long += "\n" + adminHelp
}

// socketPath resolves where the API socket is.
func (f *adminFlags) socketPath() (string, error) {
	if f.socket != "" {
		return f.socket, nil
	}
	if f.config != "" {
		c, err := config.Load(f.config)
		if err != nil {
			return "", usageError{err}
		}
		if c.API.Socket == "off" {
			return "", usageError{fmt.Errorf("%s: api.socket is off; use --api-url", f.config)}
		}
		return c.ResolvePath(c.API.Socket), nil
	}
	dd := f.dataDir
	if dd == "" {
		dd = config.DefaultDataDir
	}
	return filepath.Join(dd, "lunway.sock"), nil
}

// client connects to the daemon as the flags say.
func (f *adminFlags) client() (*api.Client, error) {
	if f.output != "table" && f.output != "json" {
		return nil, usageError{fmt.Errorf("--output %q: want table or json", f.output)}
	}
	o := api.ClientOptions{URL: f.apiURL, CAFile: f.apiCA, Timeout: f.timeout}
	if f.apiURL != "" {
		if f.tokenFile == "" {
			return nil, usageError{errors.New("--api-url needs --token-file")}
		}
		tok, err := api.LoadToken(f.tokenFile)
		if err != nil {
			return nil, usageError{fmt.Errorf("--token-file: %w", err)}
		}
		o.Token = string(tok)
	} else {
		s, err := f.socketPath()
		if err != nil {
			return nil, err
		}
		o.Socket = s
	}
	c, err := api.NewClient(o)
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

// call runs one API request. Errors the caller made (4xx: bad input,
// no such thing, conflict) exit with status 2; others with 1.
func (f *adminFlags) call(cmd *cobra.Command, method, path string, body, out any) error {
	c, err := f.client()
	if err != nil {
		return err
	}
	defer c.Close()
	err = c.Do(cmd.Context(), method, path, body, out)
	var re *api.ResponseError
	if errors.As(err, &re) && re.Status >= 400 && re.Status < 500 {
		return usageError{err}
	}
	return err
}

// emit prints v as JSON, or calls table.
func (f *adminFlags) emit(cmd *cobra.Command, v any, table func(w io.Writer)) error {
	out := cmd.OutOrStdout()
	if f.output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// done prints a one-line confirmation for people (nothing with -o json).
func (f *adminFlags) done(cmd *cobra.Command, format string, args ...any) {
	if f.output != "json" {
		fmt.Fprintf(cmd.OutOrStdout(), format+"\n", args...)
	}
}

func esc(s string) string { return strings.ReplaceAll(s, "/", "%2F") }

func targetPath(t string) string { return "/targets/" + esc(t) }

func lunPath(t string, n uint64) string { return fmt.Sprintf("%s/luns/%d", targetPath(t), n) }

func parseLUN(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > 16383 {
		return 0, usageError{fmt.Errorf("%q is not a LUN number (0..16383)", s)}
	}
	return n, nil
}

func parseTag(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, usageError{fmt.Errorf("%q is not a portal group tag (1..65535)", s)}
	}
	return uint16(n), nil
}

func parseSizeArg(s string) (config.Size, error) {
	v, err := config.ParseSize(s)
	if err != nil {
		return 0, usageError{err}
	}
	return v, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func dashList(l []string) string {
	if len(l) == 0 {
		return "-"
	}
	return strings.Join(l, ",")
}

// lunwayVersion is the module version and VCS revision of this build.
func lunwayVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v += "+" + rev + dirty
	}
	return v
}

// completeTargets completes target names from the running daemon.
func (f *adminFlags) completeTargets(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := f.client()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var ts []api.Target
	if err := c.Do(ctx, "GET", "/targets", nil, &ts); err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var out []string
	for _, t := range ts {
		if strings.HasPrefix(t.Name, toComplete) {
			out = append(out, t.Name)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// Status, health, sessions.

func newStatusCmd(f *adminFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the running daemon's status",
		Long:  "Show the running daemon's status: version, uptime, health, targets, sessions, listeners.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var st api.Status
			if err := f.call(cmd, "GET", "/status", nil, &st); err != nil {
				return err
			}
			return f.emit(cmd, st, func(w io.Writer) {
				fmt.Fprintf(w, "Version\t%s\n", st.Version)
				fmt.Fprintf(w, "PID\t%d\n", st.PID)
				fmt.Fprintf(w, "Uptime\t%s\n", time.Since(st.Started).Round(time.Second))
				fmt.Fprintf(w, "Config\t%s\n", orDash(st.ConfigPath))
				fmt.Fprintf(w, "Data dir\t%s\n", st.DataDir)
				fmt.Fprintf(w, "Health\t%s\n", st.Health)
				fmt.Fprintf(w, "Targets\t%d (%d LUNs)\n", st.Targets, st.LUNs)
				fmt.Fprintf(w, "Sessions\t%d\n", st.Sessions)
				fmt.Fprintf(w, "Portals\t%s\n", dashList(st.Portals))
				fmt.Fprintf(w, "API\t%s\n", dashList(st.API))
				fmt.Fprintf(w, "Metrics\t%s\n", orDash(st.Metrics))
				fmt.Fprintf(w, "Changes\t%d (%d refused)\n", st.ConfigChanges, st.ConfigChangesFailed)
			})
		},
	}
}

// errUnhealthy is `lunway health --check` finding a LUN not ok.
var errUnhealthy = errors.New("not healthy")

func newHealthCmd(f *adminFlags) *cobra.Command {
	var check bool
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Show the health of every LUN and backend",
		Long: `Show the health of every LUN and backend: ok, degraded (serving, but the
backend is not fully there, e.g. writes absorbed by a local cache while the
store is down) or unavailable (I/O that needs the backend fails with BUSY,
which initiators retry). With --check the exit status is 1 unless all are ok.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var h api.Health
			if err := f.call(cmd, "GET", "/health", nil, &h); err != nil {
				return err
			}
			err := f.emit(cmd, h, func(w io.Writer) {
				fmt.Fprintf(w, "Overall: %s\n\n", h.Status)
				fmt.Fprintln(w, "TARGET\tLUN\tHEALTH\tBACKEND\tREASON")
				for _, l := range h.LUNs {
					fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\n", l.Target, l.LUN, l.Health, l.Backend, orDash(l.Reason))
				}
				fmt.Fprintln(w, "\nBACKEND\tTYPE\tHEALTH\tLUNS")
				for _, b := range h.Backends {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", b.Name, b.Type, b.Health, dashList(b.LUNs))
				}
			})
			if err == nil && check && h.Status != "ok" {
				return fmt.Errorf("%w: %s", errUnhealthy, h.Status)
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "exit with status 1 unless every LUN is ok")
	return cmd
}

func newSessionCmd(f *adminFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "session",
		Aliases: []string{"sessions"},
		Short:   "List and drop iSCSI sessions",
		Long:    "List and drop iSCSI sessions (one connection each).",
	}
	var target string
	list := &cobra.Command{
		Use:   "list",
		Short: "List sessions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var ss []api.Session
			if err := f.call(cmd, "GET", "/sessions", nil, &ss); err != nil {
				return err
			}
			if target != "" {
				ss = slices.DeleteFunc(ss, func(s api.Session) bool { return !strings.EqualFold(s.Target, target) })
			}
			return f.emit(cmd, ss, func(w io.Writer) {
				fmt.Fprintln(w, "ID\tINITIATOR\tTARGET\tTPGT\tREMOTE\tLOCAL\tUP\tIN FLIGHT\tDIGESTS")
				for _, s := range ss {
					t := s.Target
					if s.Discovery {
						t = "(discovery)"
					}
					dg := "none"
					switch {
					case s.HeaderDigest && s.DataDigest:
						dg = "header,data"
					case s.HeaderDigest:
						dg = "header"
					case s.DataDigest:
						dg = "data"
					}
					fmt.Fprintf(w, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%d\t%s\n", s.ID, s.Initiator, t, s.PortalGroup, s.Remote, s.Local,
						time.Since(s.Started).Round(time.Second), s.InFlight, dg)
				}
			})
		},
	}
	list.Flags().StringVar(&target, "target", "", "only the sessions of this target")
	drop := &cobra.Command{
		Use:   "drop ID",
		Short: "End a session now, aborting its commands (the initiator may log in again)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil {
				return usageError{fmt.Errorf("%q is not a session id", args[0])}
			}
			if err := f.call(cmd, http.MethodDelete, fmt.Sprintf("/sessions/%d", id), nil, nil); err != nil {
				return err
			}
			f.done(cmd, "session %d dropped", id)
			return nil
		},
	}
	cmd.AddCommand(list, drop)
	return cmd
}
