package upstream

import (
	"testing"
	"time"
)

func TestLifecycle(t *testing.T) {
	p := Policy{MaxFailures: 3, Interval: time.Minute, DeadBackoff: time.Minute, DeadBackoffMax: 4 * time.Minute, Jitter: 0.0001}
	t0 := time.Unix(1_700_000_000, 0)
	var s Status
	steps := []struct {
		ok        bool
		wantState State
		maxNext   time.Duration
	}{
		{true, Healthy, time.Minute + time.Second},
		{false, Failing, 13 * time.Second},
		{false, Failing, 13 * time.Second},
		{false, Dead, time.Minute + time.Second},
		{false, Dead, 2*time.Minute + time.Second},
		{false, Dead, 4*time.Minute + time.Second},
		{false, Dead, 4*time.Minute + time.Second}, // capped
		{true, Healthy, time.Minute + time.Second},
	}
	for i, st := range steps {
		at := t0.Add(time.Duration(i) * time.Hour)
		s = p.Apply("x", s, CheckResult{At: at, OK: st.ok, TotalMS: 100, Cause: CauseRefused})
		if s.State != st.wantState {
			t.Fatalf("step %d: state %s, want %s", i, s.State, st.wantState)
		}
		if d := s.NextCheck.Sub(at); d > st.maxNext || d < st.maxNext/2-time.Second {
			t.Fatalf("step %d: next check in %v, want about %v", i, d, st.maxNext)
		}
	}
	if s.Failures != 0 || s.OKs != 2 || s.Checks != 8 {
		t.Fatalf("counters: %+v", s)
	}
}

func TestPassiveFailureSchedulesImmediateCheck(t *testing.T) {
	p := Policy{}
	at := time.Unix(1_700_000_000, 0)
	s := p.Apply("x", Status{}, CheckResult{At: at, OK: true, TotalMS: 50})
	s = p.Apply("x", s, CheckResult{At: at.Add(time.Second), Passive: true, Cause: CauseRefused})
	if s.State != Failing || !s.NextCheck.Equal(at.Add(time.Second)) {
		t.Fatalf("passive failure: %+v", s)
	}
	if s.Checks != 1 {
		t.Fatalf("passive result counted as a check: %d", s.Checks)
	}
	if s.Score != 0 {
		t.Fatalf("failing upstream scored %v", s.Score)
	}
}

func TestScoreOrdersByLatency(t *testing.T) {
	fast := Score(Status{State: Healthy, Checks: 10, OKs: 10, LatencyMS: 100})
	slow := Score(Status{State: Healthy, Checks: 10, OKs: 10, LatencyMS: 900})
	flaky := Score(Status{State: Healthy, Checks: 10, OKs: 5, LatencyMS: 100})
	if !(fast > slow && fast > flaky) {
		t.Fatalf("fast %v slow %v flaky %v", fast, slow, flaky)
	}
}

// TestApplyKeepsCapsOfActiveChecks: caps come from OK active checks only;
// a passive result or a failed check keeps the last proof.
func TestApplyKeepsCapsOfActiveChecks(t *testing.T) {
	p := Policy{}
	at := time.Unix(1_700_000_000, 0)
	steps := []struct {
		name string
		r    CheckResult
		want Caps
	}{
		{"ok: forward only", CheckResult{OK: true, Caps: CapForward}, CapForward},
		{"passive ok", CheckResult{OK: true, Passive: true, Caps: CapConnect}, CapForward},
		{"passive failure", CheckResult{Passive: true, Cause: CauseRefused}, CapForward},
		{"active failure", CheckResult{Cause: CauseRefused}, CapForward},
		{"ok: both", CheckResult{OK: true, Caps: CapConnect | CapForward}, CapConnect | CapForward},
		{"ok: connect only", CheckResult{OK: true, Caps: CapConnect}, CapConnect},
	}
	var s Status
	for i, st := range steps {
		st.r.At = at.Add(time.Duration(i) * time.Minute)
		s = p.Apply("x", s, st.r)
		if s.Caps != st.want {
			t.Fatalf("%s: caps %q, want %q", st.name, s.Caps, st.want)
		}
	}
}

// TestApplyKeepsFindingsOfEveryActiveCheck: what a check learnt of the
// exit lands on the upstream whether it passed or not (an elite proxy
// turned transparent shows transparent, with the exit that gave it away);
// a check that never reached the judge, and a passive result, keep the
// last findings.
func TestApplyKeepsFindingsOfEveryActiveCheck(t *testing.T) {
	type findings struct {
		exit, country string
		anon          Anonymity
		untrusted     bool
	}
	at := time.Unix(1_700_000_000, 0)
	steps := []struct {
		name string
		r    CheckResult
		want findings
	}{
		{"ok elite", CheckResult{OK: true, ExitIP: "198.51.100.7", Country: "DE", Anonymity: AnonElite}, findings{"198.51.100.7", "DE", AnonElite, false}},
		{"turned transparent", CheckResult{Cause: CauseTransparent, ExitIP: "198.51.100.8", Country: "NL", Anonymity: AnonTransparent}, findings{"198.51.100.8", "NL", AnonTransparent, false}},
		{"refused: no answer", CheckResult{Cause: CauseRefused}, findings{"198.51.100.8", "NL", AnonTransparent, false}},
		{"passive failure", CheckResult{Passive: true, Cause: CauseTimeout}, findings{"198.51.100.8", "NL", AnonTransparent, false}},
		{"tamper: no exit to believe", CheckResult{Cause: CauseTamper, Untrusted: true}, findings{"", "", "", true}},
		{"ok anonymous", CheckResult{OK: true, ExitIP: "198.51.100.7", Country: "DE", Anonymity: AnonAnonymous}, findings{"198.51.100.7", "DE", AnonAnonymous, false}},
		{"routes locally", CheckResult{Cause: CauseRoutesLocally, ExitIP: "192.0.2.1", Anonymity: AnonElite}, findings{"192.0.2.1", "", AnonElite, false}},
	}
	var s Status
	for i, st := range steps {
		st.r.At = at.Add(time.Duration(i) * time.Minute)
		s = Policy{}.Apply("x", s, st.r)
		if got := (findings{s.ExitIP, s.Country, s.Anonymity, s.Untrusted}); got != st.want {
			t.Errorf("%s: findings %+v, want %+v", st.name, got, st.want)
		}
	}
}
