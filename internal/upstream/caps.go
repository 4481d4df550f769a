package upstream

import (
	"fmt"
	"strings"
)

// Caps are what an active check proved an upstream can do, beyond carrying
// a tunnel at all. The gateway asks an upstream only for what it proved:
// a free HTTP proxy that forwards GETs but refuses CONNECT is common, and
// so is a SOCKS5 server that reads one message per read.
type Caps uint8

const (
	// CapConnect: an HTTP upstream answered CONNECT with 2xx and carried
	// the tunnel. Every non-HTTP kind tunnels by construction and is
	// given it by the probe.
	CapConnect Caps = 1 << iota
	// CapForward: an HTTP upstream forwarded an absolute-URI request
	// (GET http://judge/...) and returned the judge's answer.
	CapForward
	// CapPipeline: a SOCKS5 upstream answered a greeting and a CONNECT
	// written in one segment (it did not drop the request it had not
	// asked for yet). Without it the handshake waits for each reply, as
	// RFC 1928 describes.
	CapPipeline
)

// Has reports whether every bit of want is set.
func (c Caps) Has(want Caps) bool { return c&want == want }

// Usable is what the gateway may ask of an upstream of kind k whose last
// check proved c. Every kind but http tunnels by construction, whatever
// its record says. An http upstream whose record proves neither connect
// nor forward was stored before checks recorded them (schema 3): unknown,
// so usable for both until its next check says which.
func Usable(k Kind, c Caps) Caps {
	if k != HTTP {
		return c | CapConnect
	}
	if c&(CapConnect|CapForward) == 0 {
		return c | CapConnect | CapForward
	}
	return c
}

// String lists the set bits: "connect,forward".
func (c Caps) String() string {
	var parts []string
	if c.Has(CapConnect) {
		parts = append(parts, "connect")
	}
	if c.Has(CapForward) {
		parts = append(parts, "forward")
	}
	if c.Has(CapPipeline) {
		parts = append(parts, "pipeline")
	}
	return strings.Join(parts, ",")
}

// MarshalText writes the String form, so list --json reads "connect,pipeline".
func (c Caps) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText reads the String form back; an unknown name is an error.
func (c *Caps) UnmarshalText(b []byte) error {
	var v Caps
	for _, name := range strings.Split(string(b), ",") {
		switch strings.TrimSpace(name) {
		case "":
		case "connect":
			v |= CapConnect
		case "forward":
			v |= CapForward
		case "pipeline":
			v |= CapPipeline
		default:
			return fmt.Errorf("caps: unknown capability %q (known: connect, forward, pipeline)", name)
		}
	}
	*c = v
	return nil
}
