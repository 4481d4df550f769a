package upstream

import (
	"hash/fnv"
	"math"
	"time"
)

// Policy is the life-cycle tuning from the probe section of the config.
type Policy struct {
	MaxFailures     int           // consecutive failures before dead (default 3)
	Interval        time.Duration // healthy re-check period (default 5m)
	FailingInterval time.Duration // re-check period while failing (default Interval/5)
	DeadBackoff     time.Duration // first re-check of a dead upstream (default Interval)
	DeadBackoffMax  time.Duration // cap of the exponential backoff (default 6h)
	Jitter          float64       // ± fraction applied to every period (default 0.2)
	EWMAAlpha       float64       // weight of the newest latency sample (default 0.3)
}

// WithDefaults fills zero fields.
func (p Policy) WithDefaults() Policy {
	if p.MaxFailures <= 0 {
		p.MaxFailures = 3
	}
	if p.Interval <= 0 {
		p.Interval = 5 * time.Minute
	}
	if p.FailingInterval <= 0 {
		p.FailingInterval = p.Interval / 5
	}
	if p.DeadBackoff <= 0 {
		p.DeadBackoff = p.Interval
	}
	if p.DeadBackoffMax <= 0 {
		p.DeadBackoffMax = 6 * time.Hour
	}
	if p.Jitter <= 0 {
		p.Jitter = 0.2
	}
	if p.EWMAAlpha <= 0 || p.EWMAAlpha > 1 {
		p.EWMAAlpha = 0.3
	}
	return p
}

// Apply folds one check result into a status and returns the new status. It
// is pure: the same inputs give the same output (jitter is derived from the
// upstream id and the check time), so the store can apply it inside its
// write transaction and tests can assert exact schedules.
func (p Policy) Apply(id string, s Status, r CheckResult) Status {
	p = p.WithDefaults()
	at := r.At
	if at.IsZero() {
		at = time.Now()
	}
	if s.FirstSeen.IsZero() {
		s.FirstSeen = at
	}
	if !r.Passive {
		s.Checks++
		s.LastCheck = at
	}
	if r.OK {
		s.OKs++
		s.Failures = 0
		s.LastOK = at
		s.LastCause, s.LastError = CauseNone, ""
		if r.TotalMS > 0 {
			if s.LatencyMS == 0 {
				s.LatencyMS = r.TotalMS
			} else {
				s.LatencyMS = p.EWMAAlpha*r.TotalMS + (1-p.EWMAAlpha)*s.LatencyMS
			}
		}
		if !r.Passive {
			s.findings(r)
			s.Caps = r.Caps
		}
		s.State = Healthy
		if !r.Passive || s.NextCheck.IsZero() {
			s.NextCheck = at.Add(p.jitter(id, at, p.Interval))
		}
	} else {
		s.Failures++
		s.LastCause, s.LastError = r.Cause, r.Detail
		if !r.Passive && r.Reached() {
			// a transparent or tampering answer is a finding too: the
			// upstream shows what it was last seen doing, not an older verdict
			s.findings(r)
		} else if r.Untrusted {
			s.Untrusted = true
		}
		switch {
		case s.Failures >= p.MaxFailures:
			s.State = Dead
			over := s.Failures - p.MaxFailures // 0 on the transition
			backoff := p.DeadBackoff * time.Duration(1<<min(over, 20))
			if backoff > p.DeadBackoffMax || backoff <= 0 {
				backoff = p.DeadBackoffMax
			}
			s.NextCheck = at.Add(p.jitter(id, at, backoff))
		default:
			s.State = Failing
			next := at.Add(p.jitter(id, at, p.FailingInterval))
			if r.Passive {
				// the gateway saw it fail: have the probe look now
				next = at
			}
			s.NextCheck = next
		}
	}
	s.Score = Score(s)
	return s
}

// findings takes what an active check learnt of the exit.
func (s *Status) findings(r CheckResult) {
	s.ExitIP, s.Country, s.Anonymity, s.Untrusted = r.ExitIP, r.Country, r.Anonymity, r.Untrusted
	s.Quality = r.Quality
}

// Score combines success ratio and latency: ratio / (1 + latency/1s),
// scaled to 0..1000. Never-ok upstreams score 0.
func Score(s Status) float64 {
	if s.OKs == 0 || s.State != Healthy {
		return 0
	}
	total := s.Checks
	if total < s.OKs {
		total = s.OKs
	}
	ratio := float64(s.OKs) / float64(total)
	return math.Round(1000*ratio/(1+s.LatencyMS/1000)*100) / 100
}

// jitter spreads d by ±p.Jitter, deterministically per (id, at).
func (p Policy) jitter(id string, at time.Time, d time.Duration) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(id))
	var b [8]byte
	n := uint64(at.UnixNano())
	for i := range b {
		b[i] = byte(n >> (8 * i))
	}
	h.Write(b[:])
	f := float64(h.Sum64()%10000)/10000*2 - 1 // -1..1
	return time.Duration(float64(d) * (1 + f*p.Jitter))
}
