package phoenix

import (
	"errors"
	"strconv"
	"unicode/utf8"
)

// This file holds a small JSON scanner used by the frame decoder. It finds
// the boundaries of JSON values without building a tree, so a frame can be
// split into its topic, event, ref and payload without copying the payload
// (encoding/json would copy every json.RawMessage and allocate a map or a
// struct per frame). It accepts exactly what encoding/json's json.Valid
// accepts; FuzzDecodeFrame checks that against encoding/json.

// maxJSONDepth bounds nesting so hostile input cannot make the scanner
// recurse without end. encoding/json allows 10000; Phoenix payloads from the
// portal nest a handful of levels.
const maxJSONDepth = 10000

var (
	errJSONSyntax = errors.New("invalid JSON")
	errJSONDepth  = errors.New("JSON nested too deeply")
)

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// scanValue returns the index just past the JSON value that starts at b[i]
// (after optional white space). It never reads outside b.
func scanValue(b []byte, i int) (int, error) {
	return scanValueDepth(b, i, 0)
}

func scanValueDepth(b []byte, i, depth int) (int, error) {
	i = skipSpace(b, i)
	if i >= len(b) {
		return 0, errJSONSyntax
	}
	switch c := b[i]; {
	case c == '{':
		return scanObject(b, i, depth+1)
	case c == '[':
		return scanArray(b, i, depth+1)
	case c == '"':
		return scanString(b, i)
	case c == '-' || (c >= '0' && c <= '9'):
		return scanNumber(b, i)
	case c == 't':
		return scanLiteral(b, i, "true")
	case c == 'f':
		return scanLiteral(b, i, "false")
	case c == 'n':
		return scanLiteral(b, i, "null")
	}
	return 0, errJSONSyntax
}

func scanLiteral(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, errJSONSyntax
	}
	return i + len(lit), nil
}

func scanObject(b []byte, i, depth int) (int, error) {
	if depth > maxJSONDepth {
		return 0, errJSONDepth
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != '"' {
			return 0, errJSONSyntax
		}
		var err error
		if i, err = scanString(b, i); err != nil {
			return 0, err
		}
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != ':' {
			return 0, errJSONSyntax
		}
		if i, err = scanValueDepth(b, i+1, depth); err != nil {
			return 0, err
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return 0, errJSONSyntax
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			return i + 1, nil
		default:
			return 0, errJSONSyntax
		}
	}
}

func scanArray(b []byte, i, depth int) (int, error) {
	if depth > maxJSONDepth {
		return 0, errJSONDepth
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		var err error
		if i, err = scanValueDepth(b, i, depth); err != nil {
			return 0, err
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return 0, errJSONSyntax
		}
		switch b[i] {
		case ',':
			i++
		case ']':
			return i + 1, nil
		default:
			return 0, errJSONSyntax
		}
	}
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// scanString expects b[i] == '"' and returns the index past the closing quote.
func scanString(b []byte, i int) (int, error) {
	i++
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return i + 1, nil
		case c == '\\':
			if i+1 >= len(b) {
				return 0, errJSONSyntax
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(b)-i < 6 || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return 0, errJSONSyntax
				}
				i += 6
			default:
				return 0, errJSONSyntax
			}
		case c < 0x20:
			return 0, errJSONSyntax
		default:
			i++
		}
	}
	return 0, errJSONSyntax
}

func scanNumber(b []byte, i int) (int, error) {
	if b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return 0, errJSONSyntax
	}
	switch {
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return 0, errJSONSyntax
	}
	if i < len(b) && b[i] == '.' {
		i++
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == start {
			return 0, errJSONSyntax
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == start {
			return 0, errJSONSyntax
		}
	}
	return i, nil
}

// stringContent returns the decoded content of the JSON string literal s
// (including its quotes). Without escapes it returns the bytes between the
// quotes without allocating; with escapes it decodes them like encoding/json
// (invalid UTF-8 and lone surrogates become U+FFFD).
func stringContent(s []byte) []byte {
	inner := s[1 : len(s)-1]
	needs := false
	for _, c := range inner {
		if c == '\\' || c >= utf8.RuneSelf {
			needs = true
			break
		}
	}
	if !needs {
		return inner
	}
	out := make([]byte, 0, len(inner))
	for i := 0; i < len(inner); {
		c := inner[i]
		if c == '\\' {
			switch inner[i+1] {
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r := decodeHex4(inner[i+2 : i+6])
				i += 6
				if utf16IsSurrogate(r) {
					r2 := rune(-1)
					if i+6 <= len(inner) && inner[i] == '\\' && inner[i+1] == 'u' {
						r2 = decodeHex4(inner[i+2 : i+6])
					}
					if dec := utf16Decode(r, r2); dec != utf8.RuneError {
						out = utf8.AppendRune(out, dec)
						i += 6
						continue
					}
					r = utf8.RuneError
				}
				out = utf8.AppendRune(out, r)
				continue
			default: // '"', '\\', '/'
				out = append(out, inner[i+1])
			}
			i += 2
			continue
		}
		if c < utf8.RuneSelf {
			out = append(out, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(inner[i:])
		out = utf8.AppendRune(out, r)
		i += size
	}
	return out
}

func decodeHex4(h []byte) rune {
	v, _ := strconv.ParseUint(string(h), 16, 32)
	return rune(v)
}

func utf16IsSurrogate(r rune) bool { return r >= 0xd800 && r < 0xe000 }

func utf16Decode(r1, r2 rune) rune {
	if r1 >= 0xd800 && r1 < 0xdc00 && r2 >= 0xdc00 && r2 < 0xe000 {
		return (r1-0xd800)<<10 | (r2 - 0xdc00) + 0x10000
	}
	return utf8.RuneError
}
