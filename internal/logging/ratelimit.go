package logging

import (
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// maxKeys bounds a Limiter's memory; past it, expired keys are forgotten.
const maxKeys = 4096

// Limiter lets one event per key through every period and counts the ones it
// holds back, in the spirit of tailscale's logger.RateLimitedFn. It is safe
// for concurrent use. Keys are whatever identifies "the same warning": an
// upstream id, a source name, an error class.
type Limiter struct {
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	keys map[string]*slot
}

type slot struct {
	at         time.Time // when the last event was let through
	suppressed int       // events held back since
}

// Every returns a Limiter that lets one event per key through every d.
func Every(d time.Duration) *Limiter {
	return &Limiter{every: d, now: time.Now, keys: make(map[string]*slot)}
}

// Allow reports whether an event for key may be logged now. When it may,
// suppressed is the number of events for key held back since the last one
// allowed.
func (l *Limiter) Allow(key string) (ok bool, suppressed int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.keys[key]
	if s == nil {
		if len(l.keys) >= maxKeys {
			l.prune(now)
		}
		l.keys[key] = &slot{at: now}
		return true, 0
	}
	if now.Sub(s.at) < l.every {
		s.suppressed++
		return false, 0
	}
	n := s.suppressed
	s.at, s.suppressed = now, 0
	return true, n
}

func (l *Limiter) prune(now time.Time) {
	for k, s := range l.keys {
		if now.Sub(s.at) >= l.every {
			delete(l.keys, k)
		}
	}
	if len(l.keys) >= maxKeys {
		// Every key is live: forget them all rather than grow without bound.
		clear(l.keys)
	}
}

// Warnf logs a warning for key through log unless one was logged less than
// the period ago. The line carries a "suppressed" field when earlier
// warnings were held back.
func (l *Limiter) Warnf(log logrus.FieldLogger, key, format string, args ...any) {
	ok, n := l.Allow(key)
	if !ok {
		return
	}
	if n > 0 {
		log = log.WithField("suppressed", n)
	}
	log.Warn(fmt.Sprintf(format, args...))
}
