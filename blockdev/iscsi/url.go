package iscsi

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/lunway/lunway/target/scsi"
)

// DefaultPort is the iSCSI port (RFC 7143).
const DefaultPort = 3260

// Limits of a Target, checked by ParseURL and Open.
const (
	// MaxURLLen caps an iscsi:// URL.
	MaxURLLen = 4096
	// MaxNameLen caps an iSCSI name (RFC 7143 6.1: 223 bytes).
	MaxNameLen = 223
	// MaxSecretLen caps a CHAP secret.
	MaxSecretLen = 255
)

// Target names one logical unit of an iSCSI target.
type Target struct {
	// Addr is the portal, host:port.
	Addr string
	// IQN is the target name.
	IQN string
	// LUN is the logical unit number (0..16383).
	LUN uint64
	// User and Secret, when User is set, answer the target's CHAP challenge.
	User, Secret string
}

// ParseURL parses a target in libiscsi's URL form, which qemu-img and
// lunway's other commands also take:
//
//	iscsi://[user[%secret]@]host[:port]/target-iqn/lun
//
// The port defaults to 3260; IPv6 hosts are bracketed ([::1]:3260). The
// secret may also be given as user:secret. Errors wrap ErrURL.
func ParseURL(s string) (Target, error) {
	if len(s) > MaxURLLen {
		return Target{}, fmt.Errorf("%w: longer than %d bytes", ErrURL, MaxURLLen)
	}
	if !strings.HasPrefix(s, "iscsi://") {
		return Target{}, fmt.Errorf("%w: %q does not start with iscsi://", ErrURL, redact(s))
	}
	// libiscsi separates user and secret with '%', which url.Parse would
	// take for an escape: split the user information off first.
	rest := s[len("iscsi://"):]
	authEnd := strings.IndexByte(rest, '/')
	if authEnd < 0 {
		authEnd = len(rest)
	}
	var t Target
	if at := strings.LastIndexByte(rest[:authEnd], '@'); at >= 0 {
		user, secret, ok := strings.Cut(rest[:at], "%")
		if !ok {
			user, secret, _ = strings.Cut(rest[:at], ":")
		}
		if !validUser(user) {
			return Target{}, fmt.Errorf("%w: bad user name in %q", ErrURL, redact(s))
		}
		t.User = user
		var err error
		if t.Secret, err = url.PathUnescape(secret); err != nil {
			return Target{}, fmt.Errorf("%w: bad secret in %q", ErrURL, redact(s))
		}
		if len(t.User) > MaxNameLen || len(t.Secret) > MaxSecretLen {
			return Target{}, fmt.Errorf("%w: user name or secret too long", ErrURL)
		}
		rest = rest[at+1:]
	}
	u, err := url.Parse("iscsi://" + rest)
	if err != nil {
		return Target{}, fmt.Errorf("%w: %q: not a valid URL", ErrURL, redact(s))
	}
	if u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || u.User != nil {
		return Target{}, fmt.Errorf("%w: %q: unexpected query, fragment or user information", ErrURL, redact(s))
	}
	host := u.Hostname()
	if host == "" {
		return Target{}, fmt.Errorf("%w: %q has no host", ErrURL, redact(s))
	}
	if !validHost(host) {
		return Target{}, fmt.Errorf("%w: %q: host %q is neither an IP address nor a host name", ErrURL, redact(s), host)
	}
	port := DefaultPort
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return Target{}, fmt.Errorf("%w: bad port %q", ErrURL, p)
		}
		port = int(n)
	}
	t.Addr = net.JoinHostPort(host, strconv.Itoa(port))
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return Target{}, fmt.Errorf("%w: %q: the path must be /target-iqn/lun", ErrURL, redact(s))
	}
	t.IQN = parts[0]
	if len(t.IQN) > MaxNameLen || strings.IndexFunc(t.IQN, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		// (iSCSI names never hold spaces or control characters.)
		return Target{}, fmt.Errorf("%w: bad target name %q", ErrURL, t.IQN)
	}
	lun, err := strconv.ParseUint(parts[1], 10, 64)
	if err != nil || lun > scsi.MaxLUN {
		return Target{}, fmt.Errorf("%w: bad LUN %q (0..%d)", ErrURL, parts[1], scsi.MaxLUN)
	}
	t.LUN = lun
	return t, nil
}

// String returns the target as a URL, without the secret.
func (t Target) String() string {
	user := ""
	if t.User != "" {
		user = t.User + "@"
	}
	return "iscsi://" + user + t.Addr + "/" + url.PathEscape(t.IQN) + "/" + strconv.FormatUint(t.LUN, 10)
}

// validUser reports whether a CHAP user name can be written in a URL:
// printable ASCII without the URL's separators (libiscsi does not
// unescape it).
func validUser(u string) bool {
	if u == "" || len(u) > MaxNameLen {
		return false
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("%@/:?#[]", c) >= 0 {
			return false
		}
	}
	return true
}

// redact removes a secret from a URL for error messages.
func redact(s string) string {
	rest, ok := strings.CutPrefix(s, "iscsi://")
	if !ok {
		return s
	}
	slash := strings.IndexByte(rest, '/')
	if slash < 0 {
		slash = len(rest)
	}
	at := strings.LastIndexByte(rest[:slash], '@')
	if at < 0 {
		return s
	}
	user := rest[:at]
	if i := strings.IndexAny(user, "%:"); i >= 0 {
		user = user[:i] + "%***"
	}
	return "iscsi://" + user + "@" + rest[at+1:]
}

// validHost reports whether h is an IP address (an IPv6 one without its
// brackets) or a DNS host name.
func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if len(h) > 253 {
		return false
	}
	for _, c := range h {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
