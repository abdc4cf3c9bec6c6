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

// ValidateQueue checks a queue group name: non-empty, no whitespace (the
// same characters a subject may not hold).
func ValidateQueue(q string) error {
	if q == "" || strings.ContainsAny(q, forbidden) {
		return fmt.Errorf("%w %q", ErrBadQueue, q)
	}
	return nil
}

// forbidden are the characters that would split a subject or queue name on
// the NATS wire protocol, whose fields are separated by whitespace.
const forbidden = " \t\r\n\f\x00"

func validate(s string, wild bool) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrBadSubject)
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			// The cases spell out forbidden: a switch is much cheaper than a
			// search on this path, which every Publish takes.
			switch s[i] {
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
// wildcards. It allocates nothing. Tokens are compared exactly, so for
// inputs that fail validation (empty tokens, a ">" that is not last) the
// answer is still the token-by-token one: "*" matches any one token and a
// final ">" one or more.
func Match(pattern, subject string) bool {
	for {
		pt, prest, pmore := cut(pattern)
		st, srest, smore := cut(subject)
		if pt == ">" && !pmore {
			return true // the subject has at least this token
		}
		if pt != "*" && pt != st {
			return false
		}
		if pmore != smore {
			// One side has tokens left. A remaining ">" would need at
			// least one more subject token, so this is a mismatch too.
			return false
		}
		if !pmore {
			return true
		}
		pattern, subject = prest, srest
	}
}

// cut splits s at its first dot; more reports whether there was one, so
// that a trailing empty token ("a.") is not mistaken for the end.
func cut(s string) (tok, rest string, more bool) {
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}
