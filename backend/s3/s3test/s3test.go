// Package s3test is a small in-memory S3 service for tests of code that
// talks S3 without a real service: path-style buckets, GET with Range
// and If-Match, PUT, HEAD, DELETE, ListObjectsV2 with pagination and
// multipart uploads. It does not check signatures. Faults are injected
// with Fail (answer the next requests with an error status), SetDown
// (refuse every request with 503, or hang it) and Hijack (cut the
// connection after the headers).
//
// It implements what backend/s3 uses, as S3 documents it; it is not a
// general S3 emulator.
package s3test

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Mode is how the server answers while SetDown is in effect.
type Mode uint8

const (
	// Up: requests are served.
	Up Mode = iota
	// Down503: every request gets 503 ServiceUnavailable.
	Down503
	// DownHang: every request blocks until the server comes back up (or
	// the client gives up), as a stopped process would.
	DownHang
	// DownRefuse: the listener is closed; connections are refused.
	DownRefuse
)

// Server is an S3 service on a loopback port.
type Server struct {
	hs   *http.Server
	addr string
	wg   sync.WaitGroup // Serve goroutines
	// PageSize bounds the keys of one ListObjectsV2 page (default 1000).
	pageSize int

	mu      sync.Mutex
	buckets map[string]map[string]*object
	uploads map[string]*upload
	nextID  int
	fails   []failure
	pfails  []failure // for UploadPart requests only
	mode    Mode
	back    chan struct{} // closed when the mode returns to Up
	cut     int           // cut the next cut GET bodies halfway
	reqs    int
	ln      net.Listener // nil while DownRefuse
	closed  bool
}

type object struct {
	data  []byte
	etag  string
	mtime time.Time
}

type upload struct {
	bucket, key string
	parts       map[int][]byte
}

type failure struct {
	status int
	code   string
}

// New starts a server with one empty bucket per name given. Close it
// when done.
func New(buckets ...string) *Server {
	s := &Server{buckets: map[string]map[string]*object{}, uploads: map[string]*upload{}, pageSize: 1000}
	for _, b := range buckets {
		s.buckets[b] = map[string]*object{}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("s3test: listen: %v", err))
	}
	s.addr = ln.Addr().String()
	s.hs = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 10 * time.Second}
	s.startLocked(ln)
	return s
}

func (s *Server) startLocked(ln net.Listener) {
	s.ln = ln
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.hs.Serve(ln)
	}()
}

// URL is the endpoint ("http://127.0.0.1:port").
func (s *Server) URL() string { return "http://" + s.addr }

// Close stops the server.
func (s *Server) Close() {
	s.SetDown(Up)
	s.hs.Close()
	s.wg.Wait()
}

// SetPageSize sets the number of keys per ListObjectsV2 page.
func (s *Server) SetPageSize(n int) {
	s.mu.Lock()
	s.pageSize = max(n, 1)
	s.mu.Unlock()
}

// Fail answers the next n requests with status and S3 error code.
func (s *Server) Fail(n, status int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.fails = append(s.fails, failure{status, code})
	}
}

// FailParts answers the next n UploadPart requests with status and code.
func (s *Server) FailParts(n, status int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.pfails = append(s.pfails, failure{status, code})
	}
}

// ClearFailures forgets the failures Fail and FailParts queued.
func (s *Server) ClearFailures() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails, s.pfails = nil, nil
}

// CutBodies makes the next n GETs of object data send half the body and
// then close the connection.
func (s *Server) CutBodies(n int) {
	s.mu.Lock()
	s.cut += n
	s.mu.Unlock()
}

// SetDown changes how the server answers (Up to serve again).
func (s *Server) SetDown(m Mode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mode == m {
		return
	}
	if s.mode == DownRefuse {
		s.startLocked(relisten(s.addr))
	}
	if s.mode != Up && s.back != nil {
		close(s.back)
		s.back = nil
	}
	s.mode = m
	switch m {
	case DownHang, Down503:
		s.back = make(chan struct{})
	case DownRefuse:
		s.back = make(chan struct{})
		s.ln.Close()
		s.ln = nil
		// Drop idle connections too, as a dead process would.
		s.hs.SetKeepAlivesEnabled(false)
	}
	if m == Up {
		s.hs.SetKeepAlivesEnabled(true)
	}
}

// relisten listens on addr again, waiting for the port to be free.
func relisten(addr string) net.Listener {
	for i := 0; ; i++ {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			return ln
		}
		if i == 500 {
			panic(fmt.Sprintf("s3test: listen on %s again: %v", addr, err))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Requests is the number of requests served so far.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reqs
}

// Object returns a copy of an object's data, if it exists.
func (s *Server) Object(bucket, key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.buckets[bucket][key]
	if !ok {
		return nil, false
	}
	return slices.Clone(o.data), true
}

// Keys lists a bucket's keys in order.
func (s *Server) Keys(bucket string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k := range s.buckets[bucket] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// PendingUploads is the number of multipart uploads neither completed nor aborted.
func (s *Server) PendingUploads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.uploads)
}

type s3Error struct {
	XMLName xml.Name `xml:"Error"`
	Code    string   `xml:"Code"`
	Message string   `xml:"Message"`
}

func writeErr(w http.ResponseWriter, r *http.Request, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	b, _ := xml.Marshal(s3Error{Code: code, Message: code})
	w.Write(b)
}

func etagOf(data []byte) string {
	sum := md5.Sum(data)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.reqs++
	for s.mode == DownHang {
		back := s.back
		s.mu.Unlock()
		select {
		case <-back:
		case <-r.Context().Done():
			return
		}
		s.mu.Lock()
	}
	if s.mode == Down503 {
		s.mu.Unlock()
		writeErr(w, r, 503, "ServiceUnavailable")
		return
	}
	if len(s.fails) > 0 {
		f := s.fails[0]
		s.fails = s.fails[1:]
		s.mu.Unlock()
		writeErr(w, r, f.status, f.code)
		return
	}
	if len(s.pfails) > 0 && r.Method == http.MethodPut && r.URL.Query().Has("uploadId") {
		f := s.pfails[0]
		s.pfails = s.pfails[1:]
		s.mu.Unlock()
		writeErr(w, r, f.status, f.code)
		return
	}
	s.mu.Unlock()
	if strings.Contains(r.Header.Get("Content-Encoding"), "aws-chunked") {
		writeErr(w, r, 400, "NotImplemented") // the client should not send trailers
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/")
	bucket, key, _ := strings.Cut(path, "/")
	q := r.URL.Query()
	if key == "" {
		s.serveBucket(w, r, bucket, q)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	objs, ok := s.buckets[bucket]
	if !ok {
		writeErr(w, r, 404, "NoSuchBucket")
		return
	}
	switch {
	case r.Method == http.MethodPost && q.Has("uploads"):
		s.nextID++
		id := "upload-" + strconv.Itoa(s.nextID)
		s.uploads[id] = &upload{bucket: bucket, key: key, parts: map[int][]byte{}}
		fmt.Fprintf(w, `<InitiateMultipartUploadResult><Bucket>%s</Bucket><Key>%s</Key><UploadId>%s</UploadId></InitiateMultipartUploadResult>`,
			bucket, xmlEscape(key), id)
	case r.Method == http.MethodPut && q.Has("uploadId"):
		u := s.uploads[q.Get("uploadId")]
		n, err := strconv.Atoi(q.Get("partNumber"))
		if u == nil || err != nil || n < 1 || n > 10000 {
			writeErr(w, r, 404, "NoSuchUpload")
			return
		}
		u.parts[n] = body
		w.Header().Set("ETag", etagOf(body))
	case r.Method == http.MethodPost && q.Has("uploadId"):
		id := q.Get("uploadId")
		u := s.uploads[id]
		if u == nil {
			writeErr(w, r, 404, "NoSuchUpload")
			return
		}
		var req struct {
			Parts []struct {
				PartNumber int    `xml:"PartNumber"`
				ETag       string `xml:"ETag"`
			} `xml:"Part"`
		}
		if err := xml.Unmarshal(body, &req); err != nil || len(req.Parts) == 0 {
			writeErr(w, r, 400, "MalformedXML")
			return
		}
		var data []byte
		for i, p := range req.Parts {
			part, ok := u.parts[p.PartNumber]
			if !ok || p.PartNumber != i+1 || etagOf(part) != p.ETag {
				writeErr(w, r, 400, "InvalidPart")
				return
			}
			data = append(data, part...)
		}
		delete(s.uploads, id)
		objs[key] = &object{data: data, etag: `"mp-` + strconv.Itoa(len(req.Parts)) + `"`, mtime: time.Now()}
		fmt.Fprintf(w, `<CompleteMultipartUploadResult><Key>%s</Key><ETag>%s</ETag></CompleteMultipartUploadResult>`,
			xmlEscape(key), xmlEscape(objs[key].etag))
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		delete(s.uploads, q.Get("uploadId"))
		w.WriteHeader(204)
	case r.Method == http.MethodPut:
		o := &object{data: body, etag: etagOf(body), mtime: time.Now()}
		objs[key] = o
		w.Header().Set("ETag", o.etag)
	case r.Method == http.MethodDelete:
		delete(objs, key)
		w.WriteHeader(204)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		o, ok := objs[key]
		if !ok {
			writeErr(w, r, 404, "NoSuchKey")
			return
		}
		if m := r.Header.Get("If-Match"); m != "" && m != o.etag {
			writeErr(w, r, 412, "PreconditionFailed")
			return
		}
		h := w.Header()
		h.Set("ETag", o.etag)
		h.Set("Last-Modified", o.mtime.UTC().Format(http.TimeFormat))
		data := o.data
		status := 200
		if rg := r.Header.Get("Range"); rg != "" && r.Method == http.MethodGet {
			lo, hi, ok := parseRange(rg)
			if !ok || lo >= int64(len(data)) {
				h.Set("Content-Range", "bytes */"+strconv.Itoa(len(data)))
				writeErr(w, r, 416, "InvalidRange")
				return
			}
			hi = min(hi, int64(len(data))-1)
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", lo, hi, len(data)))
			data = data[lo : hi+1]
			status = 206
		}
		h.Set("Content-Length", strconv.Itoa(len(data)))
		if r.Method == http.MethodGet && s.cut > 0 && len(data) > 1 {
			s.cut--
			w.WriteHeader(status)
			w.Write(data[:len(data)/2])
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
				}
			}
			return
		}
		w.WriteHeader(status)
		if r.Method == http.MethodGet {
			w.Write(data)
		}
	default:
		writeErr(w, r, 405, "MethodNotAllowed")
	}
}

func (s *Server) serveBucket(w http.ResponseWriter, r *http.Request, bucket string, q map[string][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	objs, ok := s.buckets[bucket]
	switch r.Method {
	case http.MethodPut:
		if ok {
			writeErr(w, r, 409, "BucketAlreadyOwnedByYou")
			return
		}
		s.buckets[bucket] = map[string]*object{}
		return
	case http.MethodHead:
		if !ok {
			writeErr(w, r, 404, "NoSuchBucket")
		}
		return
	case http.MethodGet:
	default:
		writeErr(w, r, 405, "MethodNotAllowed")
		return
	}
	if !ok {
		writeErr(w, r, 404, "NoSuchBucket")
		return
	}
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	prefix, after := get("prefix"), get("continuation-token")
	var keys []string
	for k := range objs {
		if strings.HasPrefix(k, prefix) && k > after {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	truncated := len(keys) > s.pageSize
	if truncated {
		keys = keys[:s.pageSize]
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>%s</Name><Prefix>%s</Prefix><KeyCount>%d</KeyCount><MaxKeys>%d</MaxKeys><IsTruncated>%v</IsTruncated>`,
		bucket, xmlEscape(prefix), len(keys), s.pageSize, truncated)
	for _, k := range keys {
		o := objs[k]
		fmt.Fprintf(&b, `<Contents><Key>%s</Key><LastModified>%s</LastModified><ETag>%s</ETag><Size>%d</Size><StorageClass>STANDARD</StorageClass></Contents>`,
			xmlEscape(k), o.mtime.UTC().Format("2006-01-02T15:04:05.000Z"), xmlEscape(o.etag), len(o.data))
	}
	if truncated {
		fmt.Fprintf(&b, `<NextContinuationToken>%s</NextContinuationToken>`, xmlEscape(keys[len(keys)-1]))
	}
	b.WriteString(`</ListBucketResult>`)
	w.Header().Set("Content-Type", "application/xml")
	w.Write(b.Bytes())
}

// parseRange parses "bytes=lo-hi" (both given, as backend/s3 sends).
func parseRange(h string) (lo, hi int64, ok bool) {
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(spec, "-")
	if !found {
		return 0, 0, false
	}
	lo, err1 := strconv.ParseInt(a, 10, 64)
	hi, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || lo < 0 || hi < lo {
		return 0, 0, false
	}
	return lo, hi, true
}

func xmlEscape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
