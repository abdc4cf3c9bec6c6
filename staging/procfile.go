package staging

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// ParseProcfile parses a Procfile: one "type: command" per line, blank
// lines and lines starting with "#" ignored. Process type names hold
// letters, digits, "_" and "-". A later line for the same type wins.
func ParseProcfile(data []byte) (map[string]string, error) {
	procs := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, cmd, ok := strings.Cut(line, ":")
		name, cmd = strings.TrimSpace(name), strings.TrimSpace(cmd)
		if !ok || name == "" || cmd == "" || !validProcessType(name) {
			return nil, fmt.Errorf("staging: Procfile line %d: want \"type: command\", got %q", n, line)
		}
		procs[name] = cmd
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("staging: Procfile: %w", err)
	}
	return procs, nil
}

func validProcessType(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
