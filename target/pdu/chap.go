package pdu

import (
	"crypto/md5"
	"crypto/sha256"
	"fmt"
	"strconv"
)

// CHAP algorithms (CHAP_A values, RFC 7143 12.1.3 and the IANA registry).
const (
	CHAPMD5    = 5
	CHAPSHA256 = 7
)

// CHAPDigestLen returns the response length of a CHAP algorithm, or 0 for
// one this package does not implement.
func CHAPDigestLen(alg int) int {
	switch alg {
	case CHAPMD5:
		return md5.Size
	case CHAPSHA256:
		return sha256.Size
	}
	return 0
}

// CHAPResponse computes the CHAP response H(identifier || secret ||
// challenge) (RFC 1994 4.1).
func CHAPResponse(alg int, id byte, secret, challenge []byte) ([]byte, error) {
	buf := make([]byte, 0, 1+len(secret)+len(challenge))
	buf = append(buf, id)
	buf = append(buf, secret...)
	buf = append(buf, challenge...)
	switch alg {
	case CHAPMD5:
		s := md5.Sum(buf)
		return s[:], nil
	case CHAPSHA256:
		s := sha256.Sum256(buf)
		return s[:], nil
	}
	return nil, fmt.Errorf("%w: CHAP algorithm %d", ErrValueRange, alg)
}

// ParseCHAPIdentifier parses CHAP_I, a number 0..255.
func ParseCHAPIdentifier(v string) (byte, error) {
	n, err := ParseNumberRange(v, 0, 255)
	return byte(n), err
}

// ChooseCHAPAlgorithm returns the first algorithm in the offered CHAP_A
// list that this package implements, in the offer's order.
func ChooseCHAPAlgorithm(offered string) (int, error) {
	items, err := SplitList(offered)
	if err != nil {
		return 0, err
	}
	for _, it := range items {
		n, err := strconv.Atoi(it)
		if err == nil && CHAPDigestLen(n) > 0 {
			return n, nil
		}
	}
	return 0, fmt.Errorf("%w: no supported CHAP algorithm in %q", ErrValueRange, offered)
}
