package reload

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/config"
	"github.com/proxypool/proxypool/internal/store"
)

// TestReload: each edit of the file is a numbered reload recorded in the
// store; a valid one hands its changed keys to Apply and becomes the
// running config, a broken one or one Apply refuses keeps the running
// config and records why (file:line: key), and Wait returns each in turn.
func TestReload(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "proxypool.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("gateway:\n  strategy: round-robin\n")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(dir, "pp.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var applied [][]string
	r := New(Options{Path: path, Component: "run", PID: 4242, Live: []string{"gateway.strategy", "gateway.ports"},
		Record: st.RecordReload,
		Apply: func(_ context.Context, _, next *config.Config, changed []string) error {
			if next.Gateway.Strategy == "random" {
				return errors.New("random refused by this test's Apply")
			}
			applied = append(applied, changed)
			return nil
		}}, cfg)
	st.RecordReload(ctx, store.Reload{Component: "run", PID: 4000, Generation: 7}) // the previous process's
	r.Started(ctx)
	if rs, err := st.Reloads(ctx); err != nil || len(rs) != 1 || rs[0].PID != 4242 || rs[0].Generation != 0 {
		t.Fatalf("after Started, reloads = %+v, %v; want this process's generation 0 only", rs, err)
	}

	tests := []struct {
		name, file   string
		wantErr      string   // in the recorded error; "" applied
		wantStrategy string   // running afterwards
		wantRestart  []string // recorded as waiting for a restart
	}{
		{"valid edit", "gateway:\n  strategy: sticky\n", "", "sticky", nil},
		{"broken edit", "gateway:\n  strategy: sticky\n  strategyy: x\n", path + ":3: gateway.strategyy", "sticky", nil},
		{"refused by Apply", "gateway:\n  strategy: random\n", "random refused", "sticky", nil},
		{"fixed again", "gateway:\n  strategy: least-latency\n", "", "least-latency", nil},
		{"a key not live", "gateway:\n  strategy: least-latency\n  client-timeout: 3s\n", "", "least-latency", []string{"gateway.client-timeout"}},
	}
	for i, tt := range tests {
		write(tt.file)
		before := uint64(i)
		got := r.Reload(ctx)
		if got.Generation != before+1 || got.PID != 4242 || got.Component != "run" {
			t.Fatalf("%s: recorded %+v", tt.name, got)
		}
		if tt.wantErr == "" && got.Error != "" || !strings.Contains(got.Error, tt.wantErr) {
			t.Fatalf("%s: error %q, want one containing %q", tt.name, got.Error, tt.wantErr)
		}
		if !reflect.DeepEqual(got.Restart, tt.wantRestart) {
			t.Fatalf("%s: needs a restart %q, want %q", tt.name, got.Restart, tt.wantRestart)
		}
		if s := r.Running().Gateway.Strategy; s != tt.wantStrategy {
			t.Fatalf("%s: running strategy %s, want %s", tt.name, s, tt.wantStrategy)
		}
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		acked, err := Wait(wctx, st.Reloads, 4242, before)
		cancel()
		if acked.Generation != before+1 || (err != nil) != (tt.wantErr != "") || !reflect.DeepEqual(acked.Restart, tt.wantRestart) {
			t.Fatalf("%s: Wait = %+v, %v", tt.name, acked, err)
		}
	}
	want := [][]string{{"gateway.strategy"}, {"gateway.strategy"}, {"gateway.client-timeout"}}
	if !reflect.DeepEqual(applied, want) {
		t.Fatalf("Apply saw %q, want %q", applied, want)
	}
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := Wait(wctx, st.Reloads, 4242, uint64(len(tests))); !errors.Is(err, ErrNoAck) {
		t.Fatalf("Wait for a reload nobody made: %v, want ErrNoAck", err)
	}
}

// TestLater: a key under a live prefix still waits for a restart when
// Later names it ("*" one element), and only then.
func TestLater(t *testing.T) {
	r := New(Options{Live: []string{"groups", "gateway.strategy"}, Later: []string{"groups.*.min-healthy"}}, nil)
	tests := []struct {
		key   string
		later bool
	}{
		{"groups.us.min-healthy", true},
		{"groups.us.countries", false},
		{"groups.us", false},
		{"gateway.strategy", false},
		{"gateway.client-timeout", true},
	}
	for _, tt := range tests {
		if got := len(r.later([]string{tt.key})) == 1; got != tt.later {
			t.Errorf("%s: waits for a restart %v, want %v", tt.key, got, tt.later)
		}
	}
}
