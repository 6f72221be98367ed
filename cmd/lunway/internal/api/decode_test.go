package api

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lunway/lunway/cmd/lunway/internal/config"
)

var decodeTests = []struct {
	name  string
	body  string
	want  config.LUN // when err == ""
	field string     // the field the error names
}{
	{"minimal", `{"lun": 1, "backend": {"type": "file", "path": "a.img"}}`,
		config.LUN{LUN: 1, Backend: config.Backend{Type: "file", Path: "a.img"}}, ""},
	{"size as a number", `{"lun": 2, "size": 1073741824, "backend": {"type": "file", "path": "a.img"}}`,
		config.LUN{LUN: 2, Size: 1 << 30, Backend: config.Backend{Type: "file", Path: "a.img"}}, ""},
	{"size with a unit", `{"lun": 2, "size": "10GiB", "backend": {"type": "file", "path": "a.img"}}`,
		config.LUN{LUN: 2, Size: 10 << 30, Backend: config.Backend{Type: "file", Path: "a.img"}}, ""},
	{"nested pointers", `{"lun": 3, "read_only": true, "backend": {"type": "blockmap", "volume": "v", "store": {"type": "dir", "path": "s"}, "cache": {"path": "c", "read_timeout": "5s"}}}`,
		config.LUN{LUN: 3, ReadOnly: true, Backend: config.Backend{Type: "blockmap", Volume: "v",
			Store: &config.Store{Type: "dir", Path: "s"}, Cache: &config.Cache{Path: "c", ReadTimeout: config.Duration(5e9)}}}, ""},
	{"null is absent", `{"lun": 4, "serial": null, "backend": {"type": "file", "path": "a", "store": null}}`,
		config.LUN{LUN: 4, Backend: config.Backend{Type: "file", Path: "a"}}, ""},
	{"map of strings", `{"lun": 5, "backend": {"type": "rbd", "image": "i", "ceph": {"pool": "p", "mon_host": "10.0.0.1", "options": {"rbd_cache": "false", "x": "1"}}}}`,
		config.LUN{LUN: 5, Backend: config.Backend{Type: "rbd", Image: "i", Ceph: &config.Ceph{Pool: "p", MonHost: "10.0.0.1",
			Options: map[string]string{"rbd_cache": "false", "x": "1"}}}}, ""},
	{"number in a map of strings", `{"backend": {"ceph": {"options": {"rbd_cache": false}}}}`, config.LUN{}, "backend.ceph.options.rbd_cache"},
	{"array for a map", `{"backend": {"ceph": {"options": []}}}`, config.LUN{}, "backend.ceph.options"},
	{"unknown top-level field", `{"lun": 1, "sise": 5}`, config.LUN{}, "sise"},
	{"unknown nested field", `{"backend": {"store": {"tpye": "dir"}}}`, config.LUN{}, "backend.store.tpye"},
	{"string for a number", `{"lun": "1"}`, config.LUN{}, "lun"},
	{"negative unsigned", `{"lun": -1}`, config.LUN{}, "lun"},
	{"fraction for an integer", `{"lun": 1.5}`, config.LUN{}, "lun"},
	{"exponent for an integer", `{"lun": 1e3}`, config.LUN{}, "lun"},
	{"huge integer", `{"lun": 99999999999999999999999}`, config.LUN{}, "lun"},
	{"negative size", `{"size": -512}`, config.LUN{}, "size"},
	{"negative size string", `{"size": " -1KiB"}`, config.LUN{}, "size"},
	{"size with a bad unit", `{"size": "12 bananas"}`, config.LUN{}, "size"},
	{"size as a bool", `{"size": true}`, config.LUN{}, "size"},
	{"number for a string", `{"serial": 5}`, config.LUN{}, "serial"},
	{"number for a bool", `{"read_only": 1}`, config.LUN{}, "read_only"},
	{"array for an object", `{"backend": []}`, config.LUN{}, "backend"},
	{"bad duration", `{"backend": {"cache": {"read_timeout": "soon"}}}`, config.LUN{}, "backend.cache.read_timeout"},
	{"duration as a number", `{"backend": {"cache": {"read_timeout": 5}}}`, config.LUN{}, "backend.cache.read_timeout"},
	{"NUL in a string", `{"serial": "a\u0000b"}`, config.LUN{}, "serial"},
	{"oversized string", `{"serial": "` + strings.Repeat("s", maxString+1) + `"}`, config.LUN{}, "serial"},
	{"not an object", `[1, 2]`, config.LUN{}, "body"},
	{"empty", ``, config.LUN{}, "body"},
	{"invalid JSON", `{"lun": }`, config.LUN{}, "body"},
	{"trailing data", `{"lun": 1} x`, config.LUN{}, "body"},
	{"two values", `{"lun": 1}{"lun": 2}`, config.LUN{}, "body"},
}

func TestDecode(t *testing.T) {
	for _, tc := range decodeTests {
		t.Run(tc.name, func(t *testing.T) {
			var got config.LUN
			err := Decode([]byte(tc.body), &got)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("got %+v\nwant %+v", got, tc.want)
				}
				return
			}
			var fe *config.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || fe.Msg == "" {
				t.Fatalf("got %v, want an error on %s", err, tc.field)
			}
		})
	}
}

// TestDecodeTypes: the request types of this package decode, including
// pointers to slices and uint16 ranges.
func TestDecodeTypes(t *testing.T) {
	var p TargetPatch
	if err := Decode([]byte(`{"alias": "x", "portal_groups": [1, 2]}`), &p); err != nil {
		t.Fatal(err)
	}
	if *p.Alias != "x" || !reflect.DeepEqual(*p.PortalGroups, []uint16{1, 2}) {
		t.Fatalf("%+v", p)
	}
	var pg config.Portal
	err := Decode([]byte(`{"tag": 65536}`), &pg)
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Field != "tag" {
		t.Fatalf("tag 65536: %v", err)
	}
	var big struct {
		List []string `yaml:"list"`
	}
	body := `{"list": [` + strings.Repeat(`"a",`, maxItems) + `"a"]}`
	if err := Decode([]byte(body), &big); !errors.As(err, &fe) || fe.Field != "list" {
		t.Fatalf("oversized array: %v", err)
	}
	if err := Decode([]byte(`{}`), p); err == nil {
		t.Fatal("decoding into a non-pointer succeeded")
	}
}

// TestWireValueRoundTrip: what WireValue produces, Decode reads back.
func TestWireValueRoundTrip(t *testing.T) {
	for _, tc := range decodeTests {
		if tc.field != "" {
			continue
		}
		w, err := WireValue(tc.want)
		if err != nil {
			t.Fatal(err)
		}
		data, err := jsonMarshal(w)
		if err != nil {
			t.Fatal(err)
		}
		var got config.LUN
		if err := Decode(data, &got); err != nil {
			t.Fatalf("%s: %v (%s)", tc.name, err, data)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("%s: round trip %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// FuzzDecode: no input panics, and every error names a field.
func FuzzDecode(f *testing.F) {
	for _, tc := range decodeTests {
		f.Add([]byte(tc.body))
	}
	f.Add([]byte(`{"name": "iqn.2026-11.dev.lunway:x", "luns": [{"lun": 0, "backend": {"type": "file"}}], "acl": {"networks": ["10.0.0.0/8"]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v := range []any{new(config.LUN), new(config.Target), new(config.Portal), new(ResizeRequest), new(CloneRequest), new(TargetPatch)} {
			err := Decode(data, v)
			if err == nil {
				continue
			}
			var fe *config.FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("error without a field: %v", err)
			}
		}
	})
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	tests := []struct {
		name, content string
		mode          os.FileMode
		ok            bool
	}{
		{"good", "0123456789abcdef0123\n", 0o600, true},
		{"no newline", "0123456789abcdef0123", 0o400, true},
		{"group readable", "0123456789abcdef0123\n", 0o640, false},
		{"world readable", "0123456789abcdef0123\n", 0o604, false},
		{"too short", "short\n", 0o600, false},
		{"two lines", "0123456789abcdef\n0123456789abcdef\n", 0o600, false},
		{"empty", "", 0o600, false},
		{"too long", strings.Repeat("t", maxTokenBytes+1), 0o600, false},
	}
	for _, tc := range tests {
		tok, err := LoadToken(write(tc.name, tc.content, tc.mode))
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
		if tc.ok && string(tok) != strings.TrimRight(tc.content, "\n") {
			t.Errorf("%s: token %q", tc.name, tok)
		}
	}
	if _, err := LoadToken(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestStatusOf(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{&config.FieldError{Field: "x", Msg: "y"}, 400},
		{&Error{Field: "t", Err: ErrNotFound}, 404},
		{ErrExists, 409},
		{ErrInUse, 409},
		{ErrNotSupported, 400},
		{ErrInvalid, 400},
		{ErrUnavailable, 503},
		{ErrUnauthorized, 401},
		{errors.New("disk on fire"), 500},
	}
	for _, tc := range tests {
		if got := StatusOf(tc.err); got != tc.want {
			t.Errorf("StatusOf(%v) = %d, want %d", tc.err, got, tc.want)
		}
		if tc.want < 500 {
			re := &ResponseError{Status: tc.want}
			if re.Unwrap() == nil {
				t.Errorf("ResponseError %d unwraps to nothing", tc.want)
			}
		}
	}
}

func TestRelative(t *testing.T) {
	err := relative(&config.FieldError{Field: "targets[3].luns[1].backend.path", Msg: "m"}, "targets[3].luns[1]")
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Field != "backend.path" {
		t.Fatalf("%v", err)
	}
	err = relative(&config.FieldError{Field: "portal_groups[0].listen[0]", Msg: "m"}, "targets[3].luns[1]")
	if !errors.As(err, &fe) || fe.Field != "portal_groups[0].listen[0]" {
		t.Fatalf("unrelated field rewritten: %v", err)
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
