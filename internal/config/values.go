package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// scalarValue is a key type with a scalar syntax of its own (rotate-every:
// 10 or 2s; upstream-handshake-timeout: auto or 5s). The decoder hands it
// the scalar; its error is the key's problem.
type scalarValue interface {
	setScalar(s string) error
}

// Rotation is gateway.rotate-every: one upstream is kept for a number of
// requests ("10") or for a duration ("2s"); zero picks one per request.
type Rotation struct {
	Requests int
	Period   time.Duration
}

func (r *Rotation) setScalar(s string) error {
	t := strings.TrimSpace(s)
	if n, err := strconv.ParseInt(strings.ReplaceAll(t, "_", ""), 10, 32); err == nil {
		if n < 0 {
			return fmt.Errorf("must not be negative (0 turns it off), got %q", s)
		}
		*r = Rotation{Requests: int(n)}
		return nil
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return fmt.Errorf("%q is neither a number of requests nor a duration (use 10 or 2s)", s)
	}
	if d < 0 {
		return fmt.Errorf("must not be negative (0 turns it off), got %q", s)
	}
	*r = Rotation{Period: d}
	return nil
}

func (r Rotation) String() string {
	if r.Requests > 0 {
		return strconv.Itoa(r.Requests)
	}
	return r.Period.String()
}

// TryTimeout is gateway.upstream-handshake-timeout, the bound of one try
// through an upstream (connect and proxy handshake): "auto" (0) gives a
// try 3× the upstream's measured latency, at least MinAutoTry and at
// most gateway.dial-timeout; a duration gives every try exactly that.
type TryTimeout time.Duration

// MinAutoTry is the floor of an "auto" try: a fast upstream's one slow
// handshake is not cut off at a few milliseconds.
const MinAutoTry = time.Second

func (t *TryTimeout) setScalar(s string) error {
	v := strings.TrimSpace(s)
	if strings.EqualFold(v, "auto") {
		*t = 0
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is not auto or a duration (use auto, 3s)", s)
	}
	if d <= 0 {
		return fmt.Errorf("%q: use auto or a duration above 0", s)
	}
	*t = TryTimeout(d)
	return nil
}

// Auto reports whether tries are bounded by the upstream's latency.
func (t TryTimeout) Auto() bool { return t == 0 }

func (t TryTimeout) String() string {
	if t.Auto() {
		return "auto"
	}
	return time.Duration(t).String()
}

// ASN is an autonomous system number, written 13335 or AS13335.
type ASN uint32

func (a *ASN) setScalar(s string) error {
	n, err := upstream.ParseASN(s)
	if err != nil {
		return err
	}
	*a = ASN(n)
	return nil
}
