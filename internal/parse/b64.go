package parse

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"unicode/utf8"
)

// looksBase64 reports whether b, ignoring whitespace, is only base64
// characters (standard or URL alphabet) and long enough to be a body.
func looksBase64(b []byte) bool {
	n := 0
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		if !b64chars[c] {
			return false
		}
		n++
	}
	return n >= 16
}

// decodeSubscription decodes a base64 subscription body (whitespace and
// line wrapping ignored, padding optional, standard or URL alphabet) and
// checks that it holds text with at least one "://".
func decodeSubscription(b []byte) ([]byte, error) {
	clean := make([]byte, 0, len(b))
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		if !b64chars[c] {
			return nil, fmt.Errorf("byte %q is not base64", c)
		}
		clean = append(clean, c)
	}
	clean = bytes.TrimRight(clean, "=")
	if len(clean) == 0 {
		return nil, errors.New("empty body")
	}
	dec := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, err := base64.RawStdEncoding.Decode(dec, clean)
	if err != nil {
		n, err = base64.RawURLEncoding.Decode(dec, clean)
		if err != nil {
			return nil, fmt.Errorf("not valid base64: %v", err)
		}
	}
	dec = dec[:n]
	if !utf8.Valid(dec) {
		return nil, errors.New("decoded body is not UTF-8 text")
	}
	if !bytes.Contains(dec, []byte("://")) {
		return nil, errors.New("decoded body holds no links")
	}
	return dec, nil
}
