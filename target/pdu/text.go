package pdu

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Text limits (RFC 7143 6.1).
const (
	// MaxKeyLength is the longest key name.
	MaxKeyLength = 63
	// MaxValueLength caps one value; standard values are at most 255
	// bytes, CHAP binary values are longer.
	MaxValueLength = 8192
	// DefaultMaxTextLength caps the key=value text of one negotiation
	// sequence (several PDUs joined with the C bit) by default. The RFC
	// requires accepting at least 8192 bytes.
	DefaultMaxTextLength = 64 << 10
	// MaxPairs caps the number of key=value pairs in one text.
	MaxPairs = 1024
)

// Special answers (RFC 7143 6.2).
const (
	NotUnderstood = "NotUnderstood"
	Irrelevant    = "Irrelevant"
	RejectValue   = "Reject"
)

// KV is one key=value pair.
type KV struct {
	Key, Value string
}

func validKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '-' || c == '+' || c == '@' || c == '_'
}

// ParseText parses NUL-terminated key=value pairs. Each pair must end with
// a NUL (empty strings between NULs, such as padding, are skipped); a key
// appearing twice is ErrKeyDuplicate. The result does not alias data.
func ParseText(data []byte) ([]KV, error) {
	if len(data) > MaxDataSegmentLength {
		return nil, fmt.Errorf("%w: text of %d bytes", ErrTooLarge, len(data))
	}
	var kvs []KV
	for len(data) > 0 {
		end := bytes.IndexByte(data, 0)
		if end < 0 {
			return nil, fmt.Errorf("%w: pair not NUL-terminated", ErrKeyFormat)
		}
		pair := data[:end]
		data = data[end+1:]
		if len(pair) == 0 {
			continue
		}
		eq := bytes.IndexByte(pair, '=')
		if eq < 0 {
			return nil, fmt.Errorf("%w: no '=' in %.40q", ErrKeyFormat, pair)
		}
		key, val := pair[:eq], pair[eq+1:]
		if len(key) == 0 || len(key) > MaxKeyLength {
			return nil, fmt.Errorf("%w: key length %d", ErrKeyFormat, len(key))
		}
		for _, c := range key {
			if !validKeyChar(c) {
				return nil, fmt.Errorf("%w: bad character %q in key", ErrKeyFormat, c)
			}
		}
		if len(val) > MaxValueLength {
			return nil, fmt.Errorf("%w: value of %s is %d bytes", ErrTooLarge, key, len(val))
		}
		if len(kvs) >= MaxPairs {
			return nil, fmt.Errorf("%w: more than %d pairs", ErrTooLarge, MaxPairs)
		}
		k := string(key)
		for _, kv := range kvs {
			if kv.Key == k {
				return nil, fmt.Errorf("%w: %s", ErrKeyDuplicate, k)
			}
		}
		kvs = append(kvs, KV{Key: k, Value: string(val)})
	}
	return kvs, nil
}

// AppendText appends key=value pairs, each followed by a NUL.
func AppendText(dst []byte, kvs ...KV) []byte {
	for _, kv := range kvs {
		dst = append(dst, kv.Key...)
		dst = append(dst, '=')
		dst = append(dst, kv.Value...)
		dst = append(dst, 0)
	}
	return dst
}

// Lookup returns the value of key in kvs.
func Lookup(kvs []KV, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

// TextAssembler joins the data segments of a text or login sequence that
// spans several PDUs (C bit set on all but the last). The zero value
// assembles up to DefaultMaxTextLength bytes.
type TextAssembler struct {
	// Max caps the joined length; 0 means DefaultMaxTextLength.
	Max int
	buf []byte
}

// Add appends one PDU's data. cont is the PDU's C bit. It returns the whole
// text when the sequence is complete (cont false); the slice is valid until
// the next Add or Reset.
func (a *TextAssembler) Add(data []byte, cont bool) (text []byte, done bool, err error) {
	maxLen := a.Max
	if maxLen <= 0 {
		maxLen = DefaultMaxTextLength
	}
	if len(a.buf)+len(data) > maxLen {
		a.buf = a.buf[:0]
		return nil, false, fmt.Errorf("%w: text sequence over %d bytes", ErrTooLarge, maxLen)
	}
	a.buf = append(a.buf, data...)
	if cont {
		return nil, false, nil
	}
	text = a.buf
	a.buf = a.buf[:0:0]
	return text, true, nil
}

// Reset drops a partial sequence.
func (a *TextAssembler) Reset() { a.buf = nil }

// Pending reports whether a partial sequence is held.
func (a *TextAssembler) Pending() bool { return len(a.buf) > 0 }

// ParseNumber parses a numerical value: decimal, or hexadecimal with 0x
// (RFC 7143 6.1: decimal-constant / hex-constant, at most 64 bits).
func ParseNumber(v string) (uint64, error) {
	if len(v) == 0 || len(v) > 20 {
		return 0, fmt.Errorf("%w: number %.24q", ErrValueFormat, v)
	}
	var n uint64
	var err error
	if strings.HasPrefix(v, "0x") || strings.HasPrefix(v, "0X") {
		if len(v) == 2 {
			return 0, fmt.Errorf("%w: number %q", ErrValueFormat, v)
		}
		n, err = strconv.ParseUint(v[2:], 16, 64)
	} else {
		for _, c := range []byte(v) {
			if c < '0' || c > '9' {
				return 0, fmt.Errorf("%w: number %q", ErrValueFormat, v)
			}
		}
		n, err = strconv.ParseUint(v, 10, 64)
	}
	if err != nil {
		return 0, fmt.Errorf("%w: number %q", ErrValueFormat, v)
	}
	return n, nil
}

// ParseNumberRange parses a number and checks lo <= n <= hi.
func ParseNumberRange(v string, lo, hi uint64) (uint64, error) {
	n, err := ParseNumber(v)
	if err != nil {
		return 0, err
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%w: %d not in [%d,%d]", ErrValueRange, n, lo, hi)
	}
	return n, nil
}

// ParseBool parses "Yes" or "No".
func ParseBool(v string) (bool, error) {
	switch v {
	case "Yes":
		return true, nil
	case "No":
		return false, nil
	}
	return false, fmt.Errorf("%w: boolean %.24q", ErrValueFormat, v)
}

// FormatBool returns "Yes" or "No".
func FormatBool(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

// maxListItems caps the values of a list-of-values.
const maxListItems = 64

// SplitList splits a list-of-values at commas. Empty items are an error.
func SplitList(v string) ([]string, error) {
	items := strings.Split(v, ",")
	if len(items) > maxListItems {
		return nil, fmt.Errorf("%w: list of %d values", ErrTooLarge, len(items))
	}
	for _, it := range items {
		if it == "" {
			return nil, fmt.Errorf("%w: empty list item in %.40q", ErrValueFormat, v)
		}
	}
	return items, nil
}

// ParseBinary decodes a binary value: 0x/0X hexadecimal or 0b/0B base64
// (RFC 7143 6.1). The result is at most MaxValueLength bytes.
func ParseBinary(v string) ([]byte, error) {
	if len(v) < 3 || len(v) > MaxValueLength+2 {
		return nil, fmt.Errorf("%w: binary value length %d", ErrValueFormat, len(v))
	}
	switch v[:2] {
	case "0x", "0X":
		s := v[2:]
		if len(s)%2 == 1 {
			s = "0" + s
		}
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%w: hex value", ErrValueFormat)
		}
		return b, nil
	case "0b", "0B":
		b, err := base64.StdEncoding.DecodeString(v[2:])
		if err != nil {
			return nil, fmt.Errorf("%w: base64 value", ErrValueFormat)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: binary value without 0x/0b prefix", ErrValueFormat)
}

// FormatHex encodes b as a 0x hexadecimal binary value.
func FormatHex(b []byte) string { return "0x" + hex.EncodeToString(b) }
