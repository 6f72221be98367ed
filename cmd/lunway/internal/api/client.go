package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"
)

// ErrDaemonNotRunning is returned by the Client when nothing listens on
// the socket or address.
var ErrDaemonNotRunning = errors.New("the lunway daemon is not running")

// ClientOptions say how to reach the daemon: a Unix socket, or an https
// URL with a bearer token.
type ClientOptions struct {
	// Socket is the Unix socket path.
	Socket string
	// URL is https://host:port of the TCP listener (api.listen); it wins
	// over Socket.
	URL string
	// Token is the bearer token for URL.
	Token string
	// CAFile is a PEM file of certificates to trust for URL (for a
	// self-signed api.tls_cert); empty means the system's roots.
	CAFile string
	// Timeout bounds one request [60s].
	Timeout time.Duration
}

// Client calls the management API.
type Client struct {
	hc    *http.Client
	base  string
	token string
	where string // for error messages
}

// NewClient returns a Client; it does not connect yet.
func NewClient(o ClientOptions) (*Client, error) {
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	c := &Client{token: o.Token}
	if o.URL != "" {
		u, err := url.Parse(o.URL)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return nil, fmt.Errorf("api URL %q: want https://host:port", o.URL)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.CAFile != "" {
			pem, err := os.ReadFile(o.CAFile)
			if err != nil {
				return nil, err
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%s: no PEM certificates", o.CAFile)
			}
			tc.RootCAs = pool
		}
		tr.TLSClientConfig = tc
		c.hc = &http.Client{Transport: tr, Timeout: o.Timeout}
		c.base = strings.TrimRight(u.String(), "/")
		c.where = u.Host
		return c, nil
	}
	if o.Socket == "" {
		return nil, errors.New("no API socket or URL given")
	}
	sock := o.Socket
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConns: 2,
	}
	c.hc = &http.Client{Transport: tr, Timeout: o.Timeout}
	c.base = "http://lunway"
	c.where = sock
	return c, nil
}

// ResponseError is an error answer of the API.
type ResponseError struct {
	Status int
	Body   ErrorBody
}

func (e *ResponseError) Error() string {
	if e.Body.Field != "" {
		return e.Body.Field + ": " + e.Body.Error
	}
	if e.Body.Error != "" {
		return e.Body.Error
	}
	return http.StatusText(e.Status)
}

// Unwrap maps the status back to this package's sentinels.
func (e *ResponseError) Unwrap() error {
	switch e.Status {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrInUse
	case http.StatusUnauthorized:
		return ErrUnauthorized
	case http.StatusServiceUnavailable:
		return ErrUnavailable
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusMethodNotAllowed:
		return ErrInvalid
	}
	return nil
}

// Do sends a request to path (under Prefix) with body encoded as JSON
// (nil for none) and decodes the answer into out (nil to discard it).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+Prefix+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("%w (nothing answers at %s; start it with `lunway serve` or pass --socket/--data-dir/--api-url)", ErrDaemonNotRunning, c.where)
		}
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		re := &ResponseError{Status: resp.StatusCode}
		if json.Unmarshal(data, &re.Body) != nil {
			re.Body.Error = strings.TrimSpace(string(data))
		}
		return re
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	return json.Unmarshal(data, out)
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }
