package bus

import (
	"fmt"
	"strings"
)

// ValidateSubject checks a subject used to subscribe: non-empty tokens
// separated by dots, no whitespace, "*" only as a whole token and ">" only as
// the whole last token.
func ValidateSubject(s string) error {
	return validate(s, true)
}

// ValidateLiteral checks a subject used to publish: as ValidateSubject, but
// without wildcards.
func ValidateLiteral(s string) error {
	return validate(s, false)
}

// ValidateQueue checks a queue group name: non-empty, no whitespace.
func ValidateQueue(q string) error {
	if q == "" || strings.ContainsAny(q, " \t\r\n") {
		return fmt.Errorf("%w %q", ErrBadQueue, q)
	}
	return nil
}

func validate(s string, wild bool) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrBadSubject)
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			switch c := s[i]; c {
			case ' ', '\t', '\r', '\n', '\f', 0:
				return fmt.Errorf("%w %q: whitespace", ErrBadSubject, s)
			case '.':
			default:
				continue
			}
		}
		tok := s[start:i]
		switch {
		case tok == "":
			return fmt.Errorf("%w %q: empty token", ErrBadSubject, s)
		case tok == "*" || tok == ">":
			if !wild {
				return fmt.Errorf("%w %q: wildcard in a literal subject", ErrBadSubject, s)
			}
			if tok == ">" && i != len(s) {
				return fmt.Errorf("%w %q: '>' must be the last token", ErrBadSubject, s)
			}
		case wild && (strings.Contains(tok, "*") || strings.Contains(tok, ">")):
			// Like NATS, "a*" and "b>" are literal tokens when publishing
			// but ambiguous patterns; reject them in subscriptions.
			return fmt.Errorf("%w %q: wildcard inside a token", ErrBadSubject, s)
		}
		start = i + 1
	}
	return nil
}

// Match reports whether the literal subject matches pattern, which may hold
// wildcards. It allocates nothing.
func Match(pattern, subject string) bool {
	for {
		var pt, st string
		pt, pattern = cut(pattern)
		if pt == ">" {
			return subject != ""
		}
		if subject == "" {
			return false
		}
		st, subject = cut(subject)
		if pt != "*" && pt != st {
			return false
		}
		if pattern == "" {
			return subject == ""
		}
	}
}

func cut(s string) (tok, rest string) {
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}
