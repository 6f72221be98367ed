package api

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maxSocketPath is the longest Unix socket path Linux accepts
// (sun_path is 108 bytes including the terminating NUL).
const maxSocketPath = 107

// ErrSocketInUse is returned by ListenUnix when another process answers on
// the socket (a daemon is already running with that data directory).
var ErrSocketInUse = errors.New("api: another process is serving on the socket")

// ListenUnix listens on a Unix socket at path, mode 0600. A stale socket
// left by a daemon that died is replaced; a socket somebody answers on is
// ErrSocketInUse; a path that is not a socket is never removed. The socket
// appears at path atomically, already with its final mode (it is bound
// under a private temporary name and renamed), so there is no moment at
// which others could connect. Closing the listener removes the socket.
func ListenUnix(path string) (net.Listener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("api: socket path %s is longer than %d bytes; use a shorter api.socket", path, maxSocketPath)
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("api: %s exists and is not a socket; refusing to replace it", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: %s", ErrSocketInUse, path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("api: probing the existing socket %s: %w", path, err)
		}
		// Stale: replaced by the rename below.
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("api: %w", err)
	}
	dir := filepath.Dir(path)
	tmpDir, err := os.MkdirTemp(dir, ".lunway-sock-")
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	if len(tmp) > maxSocketPath {
		tmp = path + ".new"
		os.Remove(tmp)
	}
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("api: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("api: %w", err)
	}
	st, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("api: %w", err)
	}
	return &unixListener{UnixListener: ul, path: path, st: st}, nil
}

// unixListener removes its socket on Close, unless the path has been
// replaced by another socket meanwhile.
type unixListener struct {
	*net.UnixListener
	path string
	st   os.FileInfo
	once sync.Once
}

// Addr is the socket's final path (not the temporary name it was bound
// under).
func (l *unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if st, serr := os.Lstat(l.path); serr == nil && os.SameFile(st, l.st) {
			os.Remove(l.path)
		}
	})
	return err
}

// ListenTLS listens on TCP addr with TLS 1.2 or later, with the PEM
// certificate and key files.
func ListenTLS(addr, certFile, keyFile string) (net.Listener, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("api: TLS certificate: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}), nil
}

// maxTokenBytes caps a token file.
const maxTokenBytes = 4096

// LoadToken reads a bearer token file: one line, at least 16 bytes,
// readable only by its owner (refused when group or others can read it).
func LoadToken(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is accessible by group or others (mode %04o): chmod 600 it", path, st.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxTokenBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxTokenBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxTokenBytes)
	}
	tok := bytes.TrimRight(data, "\r\n")
	if len(tok) < 16 || bytes.ContainsAny(tok, "\r\n\x00 \t") {
		return nil, fmt.Errorf("%s must hold one token of at least 16 printable bytes on one line", path)
	}
	return tok, nil
}

// RequireToken wraps h so that requests without "Authorization: Bearer
// TOKEN" get 401.
func RequireToken(token []byte, h http.Handler) http.Handler {
	want := append([]byte("Bearer "), token...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="lunway"`)
			reply(w, http.StatusUnauthorized, ErrorBody{Error: "a valid bearer token is required", Field: "Authorization"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

type peerKey struct{}

// ConnContext is an http.Server.ConnContext that records who is on the
// other end: "uid=N pid=M" for Unix sockets (SO_PEERCRED), the address for
// TCP. PeerFromContext returns it, for the audit log.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	peer := c.RemoteAddr().String()
	if uc, ok := c.(*net.UnixConn); ok {
		if raw, err := uc.SyscallConn(); err == nil {
			raw.Control(func(fd uintptr) {
				if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
					peer = "uid=" + strconv.Itoa(int(cred.Uid)) + " pid=" + strconv.Itoa(int(cred.Pid))
				}
			})
		}
	}
	return context.WithValue(ctx, peerKey{}, peer)
}

// PeerFromContext returns the peer ConnContext recorded, or "".
func PeerFromContext(ctx context.Context) string {
	s, _ := ctx.Value(peerKey{}).(string)
	return s
}
