package bus_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/kiln-paas/kiln/bus"
)

func TestValidateSubject(t *testing.T) {
	tests := []struct {
		subject         string
		subscribe, publ bool // valid to subscribe to / publish on
	}{
		{"a", true, true},
		{"a.b.c", true, true},
		{"router.register", true, true},
		{"dea.4f2a-9c.start", true, true},
		{"_INBOX.ABC.1", true, true},
		{"*", true, false},
		{">", true, false},
		{"a.*", true, false},
		{"*.b", true, false},
		{"a.*.c", true, false},
		{"a.>", true, false},
		{"*.>", true, false},
		{"a*", false, true}, // a literal token when publishing, ambiguous when subscribing
		{"a.b>", false, true},
		{"a.>.c", false, false},
		{">.a", false, false},
		{"", false, false},
		{".", false, false},
		{".a", false, false},
		{"a.", false, false},
		{"a..b", false, false},
		{"a b", false, false},
		{"a\tb", false, false},
		{"a\rb", false, false},
		{"a\nb", false, false},
		{"a\fb", false, false},
		{"a\x00b", false, false},
		{" a", false, false},
	}
	for _, tc := range tests {
		if err := bus.ValidateSubject(tc.subject); (err == nil) != tc.subscribe || err != nil && !errors.Is(err, bus.ErrBadSubject) {
			t.Errorf("ValidateSubject(%q) = %v, want valid=%v", tc.subject, err, tc.subscribe)
		}
		if err := bus.ValidateLiteral(tc.subject); (err == nil) != tc.publ || err != nil && !errors.Is(err, bus.ErrBadSubject) {
			t.Errorf("ValidateLiteral(%q) = %v, want valid=%v", tc.subject, err, tc.publ)
		}
	}
}

func TestValidateQueue(t *testing.T) {
	tests := []struct {
		queue string
		valid bool
	}{
		{"workers", true},
		{"dea.pool-1", true},
		{"*", true},
		{"", false},
		{"a b", false},
		{"a\tb", false},
		{"a\n", false},
		{"\r", false},
		{"a\fb", false},
		{"a\x00", false},
	}
	for _, tc := range tests {
		err := bus.ValidateQueue(tc.queue)
		if (err == nil) != tc.valid || err != nil && !errors.Is(err, bus.ErrBadQueue) {
			t.Errorf("ValidateQueue(%q) = %v, want valid=%v", tc.queue, err, tc.valid)
		}
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, subject string
		want             bool
	}{
		{"a", "a", true},
		{"a", "b", false},
		{"a", "a.b", false},
		{"a.b", "a", false},
		{"a.b.c", "a.b.c", true},
		{"a.b.c", "a.b.d", false},
		{"ab", "a", false},
		{"a", "ab", false},
		{"*", "a", true},
		{"*", "a.b", false},
		{"a.*", "a.b", true},
		{"a.*", "a", false},
		{"a.*", "a.b.c", false},
		{"*.b", "a.b", true},
		{"*.b", "a.c", false},
		{"a.*.c", "a.x.c", true},
		{"a.*.c", "a.x.d", false},
		{"*.*", "a.b", true},
		{">", "a", true},
		{">", "a.b.c", true},
		{"a.>", "a", false},
		{"a.>", "a.b", true},
		{"a.>", "a.b.c", true},
		{"a.>", "b.c", false},
		{"a.*.>", "a.b", false},
		{"a.*.>", "a.b.c", true},
		{"*.>", "a", false},
		{"*.>", "a.b", true},
		// Invalid inputs still get the token-by-token answer.
		{"a.b", "a.b.", false},
		{"a.b.", "a.b", false},
		{"a.>", "a.", true},
		{"*", ".", false},
		{"*.*", ".", true},
		{"a.>.c", "a.>.c", true},
		{"a.>.c", "a.b.c", false},
	}
	for _, tc := range tests {
		if got := bus.Match(tc.pattern, tc.subject); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.subject, got, tc.want)
		}
		if got := refMatch(tc.pattern, tc.subject); got != tc.want {
			t.Errorf("reference(%q, %q) = %v, want %v", tc.pattern, tc.subject, got, tc.want)
		}
	}
}

func TestMatchAllocs(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		bus.Match("dea.*.start.>", "dea.abc.start.1.2")
	})
	if allocs != 0 {
		t.Errorf("Match allocates %v times per call, want 0", allocs)
	}
}

// refMatch is the obviously correct matcher Match is checked against: split
// both into tokens and compare them one by one.
func refMatch(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, pt := range p {
		if pt == ">" && i == len(p)-1 {
			return len(s) > i
		}
		if i >= len(s) || pt != "*" && pt != s[i] {
			return false
		}
	}
	return len(p) == len(s)
}

// refValidate is the obviously correct validator ValidateSubject and
// ValidateLiteral are checked against.
func refValidate(s string, wild bool) bool {
	if strings.ContainsAny(s, " \t\r\n\f\x00") {
		return false
	}
	toks := strings.Split(s, ".")
	for i, tok := range toks {
		switch {
		case tok == "":
			return false
		case tok == "*":
			if !wild {
				return false
			}
		case tok == ">":
			if !wild || i != len(toks)-1 {
				return false
			}
		case wild && strings.ContainsAny(tok, "*>"):
			return false
		}
	}
	return true
}

func FuzzValidateSubject(f *testing.F) {
	for _, s := range []string{"a.b.c", "a.*.c", "a.>", ">", "*", "", "a..b", "a.>.b", "a b", "a*", "a.", "_INBOX.x.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		errSub, errLit := bus.ValidateSubject(s), bus.ValidateLiteral(s)
		if want := refValidate(s, true); (errSub == nil) != want {
			t.Errorf("ValidateSubject(%q) = %v, reference says valid=%v", s, errSub, want)
		}
		if want := refValidate(s, false); (errLit == nil) != want {
			t.Errorf("ValidateLiteral(%q) = %v, reference says valid=%v", s, errLit, want)
		}
		if errSub != nil && !errors.Is(errSub, bus.ErrBadSubject) || errLit != nil && !errors.Is(errLit, bus.ErrBadSubject) {
			t.Errorf("errors for %q do not wrap ErrBadSubject: %v, %v", s, errSub, errLit)
		}
		if errLit == nil && !bus.Match(s, s) {
			t.Errorf("valid literal %q does not match itself", s)
		}
		if errLit == nil && errSub == nil && !bus.Match(">", s) {
			t.Errorf("> does not match valid literal %q", s)
		}
	})
}

func FuzzMatch(f *testing.F) {
	for _, c := range [][2]string{
		{"a.b", "a.b"}, {"a.*", "a.b"}, {"a.>", "a.b.c"}, {">", "x"}, {"*.*", "a"},
		{"a.b", "a.b."}, {"a.>.c", "a.b.c"}, {"", ""}, {"*", "."},
	} {
		f.Add(c[0], c[1])
	}
	f.Fuzz(func(t *testing.T, pattern, subject string) {
		if got, want := bus.Match(pattern, subject), refMatch(pattern, subject); got != want {
			t.Errorf("Match(%q, %q) = %v, reference says %v", pattern, subject, got, want)
		}
	})
}
