package placement

import (
	"crypto/sha1"
	"encoding/binary"
	"strconv"
)

// tieKey hashes an app and an instance index with SHA1. Every DEA computes
// the same key for a request; mixing it with each DEA's id hash ranks equal
// DEAs differently for every (app, index), like rendezvous hashing.
func tieKey(app string, index int) uint64 {
	var buf [96]byte
	b := append(buf[:0], app...)
	b = append(b, 0)
	b = strconv.AppendInt(b, int64(index), 10)
	sum := sha1.Sum(b)
	return binary.BigEndian.Uint64(sum[:8])
}

// idHash is FNV-1a of a DEA id. It need not resist attack: DEA ids are
// chosen by operators or random, and SHA1 on the request side already
// spreads the keys.
func idHash(id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return h
}

// tieFraction maps a request key and a DEA id hash to [0, 1).
func tieFraction(key, id uint64) float64 {
	// splitmix64 finaliser: every input bit affects every output bit.
	z := key ^ id
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11) / (1 << 53)
}
