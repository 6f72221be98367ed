package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lunway/lunway/cmd/lunway/internal/config"
	"go.yaml.in/yaml/v3"
)

// Limits of request decoding.
const (
	// MaxBodyBytes caps a request body.
	MaxBodyBytes = 64 << 10
	// maxItems caps a JSON array, maxString a JSON string.
	maxItems  = 4096
	maxString = 4096
)

var (
	sizeType     = reflect.TypeFor[config.Size]()
	durationType = reflect.TypeFor[config.Duration]()
)

// Decode decodes one JSON value from data into v, a pointer to a struct
// whose fields carry yaml tags (the configuration file's schema). It is
// strict: an unknown field, a wrong type, a negative number for an
// unsigned field or a size, an oversized string or array, or trailing
// data is an error. Errors are *config.FieldError naming the field as
// "backend.store.type" or "luns[1].size" ("body" for the whole).
func Decode(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("api: Decode needs a non-nil pointer, not %T", v)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		if errors.Is(err, io.EOF) {
			return &config.FieldError{Field: "body", Msg: "empty; a JSON object is required"}
		}
		return &config.FieldError{Field: "body", Msg: "not valid JSON: " + err.Error()}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &config.FieldError{Field: "body", Msg: "trailing data after the JSON value"}
	}
	return assign("", tree, rv.Elem())
}

func join(path, name string) string {
	if name == "" {
		name = `""`
	}
	if path == "" {
		return name
	}
	return path + "." + name
}

func fieldName(path string) string {
	if path == "" {
		return "body"
	}
	return path
}

func typeErr(path, want string, got any) error {
	return &config.FieldError{Field: fieldName(path), Msg: fmt.Sprintf("must be %s, not %s", want, jsonKind(got))}
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// yamlFields maps the yaml names of t's exported fields to their indexes.
func yamlFields(t reflect.Type) map[string]int {
	out := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = i
	}
	return out
}

func assign(path string, in any, rv reflect.Value) error {
	if in == nil {
		rv.SetZero() // null means absent
		return nil
	}
	switch rv.Type() {
	case sizeType:
		var sz config.Size
		switch x := in.(type) {
		case json.Number:
			n, err := strconv.ParseInt(x.String(), 10, 64)
			if err != nil {
				return &config.FieldError{Field: fieldName(path), Msg: fmt.Sprintf("%s is not a whole number of bytes", x)}
			}
			if n < 0 {
				return &config.FieldError{Field: fieldName(path), Msg: fmt.Sprintf("%d: must not be negative", n)}
			}
			sz = config.Size(n)
		case string:
			if strings.HasPrefix(strings.TrimSpace(x), "-") {
				return &config.FieldError{Field: fieldName(path), Msg: fmt.Sprintf("%q: must not be negative", x)}
			}
			v, err := config.ParseSize(x)
			if err != nil {
				return &config.FieldError{Field: fieldName(path), Msg: err.Error()}
			}
			sz = v
		default:
			return typeErr(path, `a size (a number of bytes or a string like "10GiB")`, in)
		}
		rv.SetInt(int64(sz))
		return nil
	case durationType:
		s, ok := in.(string)
		if !ok {
			return typeErr(path, `a duration string like "30s"`, in)
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return &config.FieldError{Field: fieldName(path), Msg: fmt.Sprintf("%q is not a duration (e.g. 500ms, 30s, 5m)", s)}
		}
		rv.SetInt(int64(d))
		return nil
	}
	switch rv.Kind() {
	case reflect.Pointer:
		nv := reflect.New(rv.Type().Elem())
		if err := assign(path, in, nv.Elem()); err != nil {
			return err
		}
		rv.Set(nv)
		return nil
	case reflect.Struct:
		m, ok := in.(map[string]any)
		if !ok {
			return typeErr(path, "an object", in)
		}
		fields := yamlFields(rv.Type())
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys) // the first error is deterministic
		for _, k := range keys {
			i, ok := fields[k]
			if !ok {
				return &config.FieldError{Field: join(path, k), Msg: "unknown field"}
			}
			if err := assign(join(path, k), m[k], rv.Field(i)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		m, ok := in.(map[string]any)
		if !ok {
			return typeErr(path, "an object", in)
		}
		if rv.Type().Key().Kind() != reflect.String {
			break
		}
		if len(m) > maxItems {
			return &config.FieldError{Field: fieldName(path), Msg: fmt.Sprintf("more than %d entries", maxItems)}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		mv := reflect.MakeMapWithSize(rv.Type(), len(m))
		for _, k := range keys {
			ev := reflect.New(rv.Type().Elem()).Elem()
			if err := assign(join(path, k), m[k], ev); err != nil {
				return err
			}
			mv.SetMapIndex(reflect.ValueOf(k).Convert(rv.Type().Key()), ev)
		}
		rv.Set(mv)
		return nil
	case reflect.Slice:
		arr, ok := in.([]any)
		if !ok {
			return typeErr(path, "an array", in)
		}
		if len(arr) > maxItems {
			return &config.FieldError{Field: fieldName(path), Msg: fmt.Sprintf("more than %d items", maxItems)}
		}
		s := reflect.MakeSlice(rv.Type(), len(arr), len(arr))
		for i, x := range arr {
			if err := assign(fmt.Sprintf("%s[%d]", path, i), x, s.Index(i)); err != nil {
				return err
			}
		}
		rv.Set(s)
		return nil
	case reflect.String:
		s, ok := in.(string)
		if !ok {
			return typeErr(path, "a string", in)
		}
		if len(s) > maxString {
			return &config.FieldError{Field: fieldName(path), Msg: fmt.Sprintf("longer than %d bytes", maxString)}
		}
		if strings.ContainsRune(s, 0) {
			return &config.FieldError{Field: fieldName(path), Msg: "contains a NUL byte"}
		}
		rv.SetString(s)
		return nil
	case reflect.Bool:
		b, ok := in.(bool)
		if !ok {
			return typeErr(path, "true or false", in)
		}
		rv.SetBool(b)
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := in.(json.Number)
		if !ok {
			return typeErr(path, "an integer", in)
		}
		v, err := strconv.ParseInt(n.String(), 10, rv.Type().Bits())
		if err != nil {
			return &config.FieldError{Field: fieldName(path), Msg: fmt.Sprintf("%s is not an integer in range", n)}
		}
		rv.SetInt(v)
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := in.(json.Number)
		if !ok {
			return typeErr(path, "an integer", in)
		}
		if strings.HasPrefix(n.String(), "-") {
			return &config.FieldError{Field: fieldName(path), Msg: fmt.Sprintf("%s: must not be negative", n)}
		}
		v, err := strconv.ParseUint(n.String(), 10, rv.Type().Bits())
		if err != nil {
			return &config.FieldError{Field: fieldName(path), Msg: fmt.Sprintf("%s is not an integer in range 0..%d", n, uint64(1)<<rv.Type().Bits()-1)}
		}
		rv.SetUint(v)
		return nil
	}
	return &config.FieldError{Field: fieldName(path), Msg: fmt.Sprintf("cannot decode into %s", rv.Type())}
}

// WireValue converts v, a value of the configuration schema (yaml tags),
// to its JSON form: maps, slices and scalars with the configuration's
// field names, sizes as "1GiB" strings. The Client sends it; the Handler
// answers with it.
func WireValue(v any) (any, error) {
	data, err := yaml.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	if err := yaml.Unmarshal(data, &out); err != nil {
		return nil, err
	}
	return out, nil
}
