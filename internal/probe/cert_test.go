package probe_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/parse"
	"github.com/proxypool/proxypool/internal/probe"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/upstream"
)

// TestCertificateCauseStored: an https:// proxy behind a self-signed
// certificate, and the fleet's trojan, probed from their links into the
// real store. Without the insecure flag the stored last error names the
// certificate check that failed (what `proxypoolctl list` shows), not a
// one-word class; with it the upstream is healthy with the right exit.
func TestCertificateCauseStored(t *testing.T) {
	judge := fleet.StartJudgeT(t)
	px := fleet.StartTLSConnectT(t, "127.63.0.1:0")
	f := fleet.StartT(t, fleet.Spec{Members: []fleet.MemberSpec{{Kind: fleet.Trojan, Behavior: fleet.Good}}})
	tr := f.Member(0)
	tests := []struct {
		name    string
		link    string
		state   upstream.State
		exit    string
		lastErr string // exact
	}{
		{"https no flag", "https://" + px.Addr() + "#strict", upstream.Failing, "", "certificate: x509: certificate signed by unknown authority"},
		{"https wrong sni", "https://" + px.Addr() + "?sni=wrong.example#sni", upstream.Failing, "", "certificate: x509: certificate is valid for " + fleet.TLSConnectName + ", not wrong.example"},
		{"https allowInsecure=1", "https://" + px.Addr() + "?allowInsecure=1#insecure", upstream.Healthy, "127.63.0.1", ""},
		{"trojan no flag", strings.Replace(tr.URI(), "&allowInsecure=1", "", 1), upstream.Failing, "", "certificate: x509: certificate signed by unknown authority"},
		{"trojan allow_insecure=1", strings.Replace(tr.URI(), "allowInsecure=1", "allow_insecure=1", 1), upstream.Healthy, tr.ExitIP, ""},
	}
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "pp.db"), store.Options{
		Policy: upstream.Policy{MaxFailures: 3, FailingInterval: time.Hour, Interval: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ids := make([]string, len(tests))
	for i, tc := range tests {
		u, err := parse.ParseURI(tc.link)
		if err != nil {
			t.Fatalf("%s: parsing %s: %v", tc.name, tc.link, err)
		}
		if _, err := st.Add(ctx, "manual", u); err != nil {
			t.Fatal(err)
		}
		ids[i] = u.ID
	}
	p := newProber(t, f, judge, 2*time.Second)
	if err := p.Run(ctx, st, st, probe.RunOptions{MaxPasses: 1, Idle: 5 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := st.Get(ctx, ids[i])
			if err != nil {
				t.Fatal(err)
			}
			if got := upstream.Failure(r.LastCause, r.LastError); r.State != tc.state || got != tc.lastErr {
				t.Errorf("state %s, last error %q; want %s, %q", r.State, got, tc.state, tc.lastErr)
			}
			if tc.exit != "" && r.ExitIP != tc.exit {
				t.Errorf("exit %q, want %q", r.ExitIP, tc.exit)
			}
		})
	}
}
