package torctl

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"strings"
)

// HashPassword returns the HashedControlPassword line value tor accepts for
// password (what `tor --hash-password` prints): "16:" and the hex of an
// 8-byte random salt, the count indicator 0x60 (65,536 bytes) and the
// OpenPGP iterated-and-salted S2K SHA-1 digest of salt+password.
func HashPassword(password string) string {
	var salt [8]byte
	rand.Read(salt[:])
	return hashPassword(salt, password)
}

// HashPasswordSalt is HashPassword with a given salt: the same password
// and salt always give the same line (a generated torrc that must not
// change on every run).
func HashPasswordSalt(password string, salt [8]byte) string { return hashPassword(salt, password) }

func hashPassword(salt [8]byte, password string) string {
	const indicator = 0x60
	count := (16 + (indicator & 15)) << ((indicator >> 4) + 6)
	tmp := append(salt[:len(salt):len(salt)], password...)
	h := sha1.New()
	for count > 0 {
		if count >= len(tmp) {
			h.Write(tmp)
			count -= len(tmp)
		} else {
			h.Write(tmp[:count])
			count = 0
		}
	}
	out := append(salt[:len(salt):len(salt)], indicator)
	return "16:" + strings.ToUpper(hex.EncodeToString(h.Sum(out)))
}

// quote makes s a control-protocol QuotedString.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\r", `\r`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}
