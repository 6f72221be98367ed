package paths

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ErrMissingTool reports a program a path needs that is not installed.
var ErrMissingTool = errors.New("paths: program not installed")

// NeedTool returns the program's path or an error naming the package to
// install.
func NeedTool(name, pkg string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %s (apt-get install %s)", ErrMissingTool, name, pkg)
	}
	return p, nil
}

// proc is a child process the benchmark started and must stop.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// startProc starts a program with its output in logPath. The process is
// in its own process group so that stop ends any children it has.
func startProc(name, logPath string, args ...string) (*proc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("paths: %w", err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("paths: start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after grace, and
// waits for the process.
func (p *proc) stop(grace time.Duration) {
	if p == nil || p.exited() {
		return
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// tail returns the last lines of the process' log, for error messages.
func (p *proc) tail() string { return tailFile(p.log, 8) }

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// waitDial waits until addr accepts connections on network, the process
// ends, or the context or timeout expires.
func waitDial(ctx context.Context, p *proc, network, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			c.Close()
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("paths: %s exited: %v: %s", p.name, p.err, p.tail())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("paths: %s did not listen on %s: %w", p.name, addr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitLine waits until the file at path has a line starting with one of
// prefixes and returns it.
func waitLine(ctx context.Context, p *proc, path string, timeout time.Duration, prefixes ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if f, err := os.Open(path); err == nil {
			sc := bufio.NewScanner(io.LimitReader(f, 16<<20))
			for sc.Scan() {
				line := strings.TrimLeft(sc.Text(), "\x1b[?0123456789;lhJHc")
				if i := indexAny(line, prefixes); i >= 0 {
					f.Close()
					return line[i:], nil
				}
			}
			f.Close()
		}
		if p.exited() {
			return "", fmt.Errorf("paths: %s exited: %v: %s", p.name, p.err, p.tail())
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("paths: waiting for %s: %w: %s", p.name, ctx.Err(), p.tail())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func indexAny(s string, subs []string) int {
	for _, sub := range subs {
		if i := strings.Index(s, sub); i >= 0 {
			return i
		}
	}
	return -1
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("paths: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// run runs a short command and returns its combined output in the error.
func run(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("paths: %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Tgt is Debian's tgtd serving one file as LUN 1 of a target on
// 127.0.0.1, with its own control port so that it never touches another
// tgtd on the machine.
type Tgt struct {
	p       *proc
	addr    string
	control string
}

// TgtIQN is the name of the target tgtd serves in the benchmark.
const TgtIQN = "iqn.2026-11.dev.lunway:bench-paths-tgt"

// StartTgt serves backing with tgtd (backing store rdwr, its default).
func StartTgt(ctx context.Context, workDir, backing string) (*Tgt, error) {
	tgtd, err := NeedTool("tgtd", "tgt")
	if err != nil {
		return nil, err
	}
	tgtadm, err := NeedTool("tgtadm", "tgt")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	control := fmt.Sprint(20000 + port%10000) // tgtd's control socket /var/run/tgtd/socket.N
	t := &Tgt{addr: fmt.Sprintf("127.0.0.1:%d", port), control: control}
	t.p, err = startProc("tgtd", filepath.Join(workDir, "tgtd.log"), tgtd, "-f", "-C", control,
		"--iscsi", "portal="+t.addr)
	if err != nil {
		return nil, err
	}
	adm := func(args ...string) error {
		return run(ctx, append([]string{tgtadm, "-C", control, "--lld", "iscsi"}, args...)...)
	}
	var aerr error
	for range 100 {
		if aerr = adm("--op", "show", "--mode", "target"); aerr == nil || t.p.exited() {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if aerr == nil {
		aerr = errors.Join(
			adm("--op", "new", "--mode", "target", "--tid", "1", "-T", TgtIQN),
			adm("--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "-b", backing),
			adm("--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"),
		)
	}
	if aerr == nil {
		aerr = waitDial(ctx, t.p, "tcp", t.addr, 10*time.Second)
	}
	if aerr != nil {
		t.Close()
		return nil, aerr
	}
	return t, nil
}

// Addr is tgtd's portal.
func (t *Tgt) Addr() string { return t.addr }

// Close stops tgtd.
func (t *Tgt) Close() error {
	t.p.stop(5 * time.Second)
	return nil
}

// QemuNBD is qemu-nbd on the host serving an image (a file or an iscsi://
// URL through libiscsi) over a Unix socket.
type QemuNBD struct {
	p    *proc
	sock string
}

// StartQemuNBD serves image in format fmt ("raw", "vmdk", "qcow2") with
// the cache mode hypervisors use for shared storage (cache=none: no host
// page cache, guest flushes pass through).
func StartQemuNBD(ctx context.Context, workDir, name, image, format string) (*QemuNBD, error) {
	bin, err := NeedTool("qemu-nbd", "qemu-utils")
	if err != nil {
		return nil, err
	}
	q := &QemuNBD{sock: filepath.Join(workDir, name+".nbd.sock")}
	os.Remove(q.sock)
	q.p, err = startProc("qemu-nbd "+name, filepath.Join(workDir, name+".qemu-nbd.log"), bin,
		"--persistent", "--shared=4", "--cache=none", "-f", format, "-k", q.sock, image)
	if err != nil {
		return nil, err
	}
	if err := waitDial(ctx, q.p, "unix", q.sock, 30*time.Second); err != nil {
		q.Close()
		return nil, err
	}
	return q, nil
}

// Dial opens the export.
func (q *QemuNBD) Dial(ctx context.Context) (*NBD, error) { return DialNBD(ctx, "unix", q.sock, "") }

// Close stops qemu-nbd.
func (q *QemuNBD) Close() error {
	q.p.stop(10 * time.Second)
	os.Remove(q.sock)
	return nil
}
