package staging

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type recorder struct{ writes []string }

func (r *recorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

func TestLogWriter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		writes []string
		want   []string
		tail   []string
	}{
		{"whole lines", []string{"a\nb\n"}, []string{"a\n", "b\n"}, []string{"a", "b"}},
		{"split lines", []string{"he", "llo\nwor", "ld\n"}, []string{"hello\n", "world\n"}, []string{"hello", "world"}},
		{"crlf", []string{"dos\r\n"}, []string{"dos\n"}, []string{"dos"}},
		{"partial flushed", []string{"x\ny"}, []string{"x\n", "y\n"}, []string{"x", "y"}},
		{"tail keeps last", []string{"1\n2\n3\n4\n"}, []string{"1\n", "2\n", "3\n", "4\n"}, []string{"2", "3", "4"}},
		{"long line cut", []string{strings.Repeat("z", maxLineBytes+5), "\n"}, []string{strings.Repeat("z", maxLineBytes) + "\n", "zzzzz\n"}, []string{strings.Repeat("z", maxLineBytes), "zzzzz"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var r recorder
			l := newLogWriter(&r, 3)
			for _, w := range tt.writes {
				if n, err := l.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			l.Flush()
			if diff := cmp.Diff(tt.want, r.writes); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.tail, l.Tail()); diff != "" {
				t.Errorf("tail (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGoStart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		out  string
		want string
	}{
		{"example.com/hello\texample.com/hello\n", "./bin/hello"},
		{"example.com/x/v2\texample.com/x/v2\nexample.com/x/v2/cmd/tool\texample.com/x/v2\n", "./bin/x"},
		{"example.com/m/cmd/server\texample.com/m\n", "./bin/server"},
		{"example.com/m/cmd/a\texample.com/m\nexample.com/m/cmd/b\texample.com/m\n", ""},
	}
	for _, tt := range tests {
		if got := goStart(parseGoMains(tt.out)); got != tt.want {
			t.Errorf("goStart(%q) = %q, want %q", tt.out, got, tt.want)
		}
	}
}
