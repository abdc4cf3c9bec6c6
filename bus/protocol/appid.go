package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// AppID identifies an app on the bus (the "droplet" field). The original
// system used integer database ids; kiln uses strings (UUIDs). Decoding
// accepts both a JSON string and a JSON integer, so messages from either
// kind of sender are understood; encoding always writes a string.
type AppID string

// UnmarshalJSON accepts a string or an integer.
func (a *AppID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = AppID(s)
		return nil
	}
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("app id: want string or integer, got %.20s", b)
	}
	*a = AppID(strconv.FormatInt(n, 10))
	return nil
}
