package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/torgen"
)

// recordedTor is the recorded consensus's exits and the geoip lines
// that place them (internal/torgen/exits/testdata).
const (
	recordedConsensus = "../../internal/torgen/exits/testdata/consensus-ns-2022-11-19-exits.txt"
	recordedGeoIP     = "../../internal/torgen/exits/testdata/geoip-consensus-exits"
)

// torgenConfig writes a proxypool.yaml for torgen in dir with the
// recorded relays, groups us and nonus, and mode.
func torgenConfig(t *testing.T, dir, mode string) string {
	t.Helper()
	relays, _ := filepath.Abs(recordedConsensus)
	geo, _ := filepath.Abs(recordedGeoIP)
	conf := fmt.Sprintf(`database: %[1]s/pp.db
sources: []
probe:
  judges: [http://127.80.0.1:27000/get]
  geoip: %[2]s
  geoip6: ""
groups:
  us: {countries: [US]}
  nonus: {exclude-countries: [US, UA, CH]}
tor:
  enabled: true
  relays: %[3]s
  relays-format: auto
  mode: %[4]s
  groups: [us, nonus]
  port-base: 27100
  port-max: 27999
  torrc-dir: %[1]s/etc
metrics: {enabled: false}
log: {level: warn, format: text}
`, dir, geo, relays, mode)
	path := filepath.Join(dir, "proxypool-"+mode+".yaml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// applyTorgen runs one generation of conf into its store and torrc dir,
// with a runner that starts nothing.
func applyTorgen(t *testing.T, conf string) torgen.Plan {
	t.Helper()
	e, err := load(&globals{config: conf})
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.openStore(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tor, err := torOps(e, st, true)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := tor.Apply(context.Background(), &torgen.DryRun{})
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// hashDir hashes every file's name, mode and bytes under dir.
func hashDir(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v\n", path, info.Mode())
		if d.Type().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// hashTables hashes every row of every table of the database at path.
func hashTables(t *testing.T, path string) string {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	h := sha256.New()
	for _, tb := range tables {
		rs, err := db.Query("SELECT * FROM " + tb)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rs.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		n := 0
		for rs.Next() {
			if err := rs.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(h, "%s %v\n", tb, vals)
			n++
		}
		rs.Close()
		fmt.Fprintf(h, "%s: %d rows\n", tb, n)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestTorgenDryRunChangesNothing: on a torrc dir and store that a single
// mode torgen populated, `torgen --dry-run` after a switch to country
// mode prints the files it would write and remove and the instances it
// would start and stop, and changes no byte of the dir nor any row of the
// store.
func TestTorgenDryRunChangesNothing(t *testing.T) {
	dir := t.TempDir()
	single := torgenConfig(t, dir, "single")
	first := applyTorgen(t, single)
	if len(first.Instances) < 10 {
		t.Fatalf("populating: %d instances, want the default cap's worth", len(first.Instances))
	}
	etc := filepath.Join(dir, "etc")
	db := filepath.Join(dir, "pp.db")
	dirBefore, dbBefore := hashDir(t, etc), hashTables(t, db)

	country := torgenConfig(t, dir, "country")
	var out, errOut bytes.Buffer
	if code := mainArgs([]string{"--config", country, "torgen", "--dry-run"}, &out, &errOut); code != 0 {
		t.Fatalf("torgen --dry-run exited %d: %s", code, errOut.String())
	}
	if got := hashDir(t, etc); got != dirBefore {
		t.Errorf("the torrc dir changed under --dry-run")
	}
	if got := hashTables(t, db); got != dbBefore {
		t.Errorf("the store changed under --dry-run")
	}
	text := out.String()
	// Each single-mode instance is stopped or, where a country instance
	// takes its port, reloaded; the two country instances are written.
	stops, starts, reloads := strings.Count(text, "\nstop "), strings.Count(text, "\nstart "), strings.Count(text, "\nreload ")
	if stops+reloads != len(first.Instances) || starts+reloads != 2 {
		t.Errorf("plan lists %d stops, %d starts, %d reloads; want every one of the %d single-mode instances stopped or reloaded and 2 country ones written:\n%s",
			stops, starts, reloads, len(first.Instances), text)
	}
	for _, want := range []string{"remove " + filepath.Join(etc, "torrc."), "write " + filepath.Join(etc, "torrc."), "dry run, nothing changed", "group us: 1 instances of 1 slots", "group nonus: 1 instances of 1 slots"} {
		if !strings.Contains(text, want) {
			t.Errorf("plan does not say %q:\n%s", want, text)
		}
	}
}

// TestTorgenRetriesAFailedDiscovery: the one-shot unit's generation,
// whose relay list is not there yet at start (the network not up), is
// tried again after torops.FirstRetry and succeeds, instead of failing
// until the timer's next run.
func TestTorgenRetriesAFailedDiscovery(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e, err := load(&globals{config: torgenConfig(t, dir, "single")})
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	e.log.Out = &logged
	later := filepath.Join(dir, "relays-later.txt")
	e.cfg.Tor.Relays = later
	st, err := e.openStore(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tor, err := torOps(e, st, true)
	if err != nil {
		t.Fatal(err)
	}
	recorded, err := os.ReadFile(recordedConsensus)
	if err != nil {
		t.Fatal(err)
	}
	arrive := time.AfterFunc(time.Second, func() { os.WriteFile(later, recorded, 0o644) })
	defer arrive.Stop()
	start := time.Now()
	plan, err := applyRetrying(ctx, e, tor, &torgen.DryRun{})
	if err != nil {
		t.Fatalf("after %v: %v\n%s", time.Since(start), err, logged.String())
	}
	if len(plan.Instances) == 0 || !strings.Contains(logged.String(), "trying again in 5s") {
		t.Errorf("%d instances after %v; log:\n%s", len(plan.Instances), time.Since(start).Round(time.Millisecond), logged.String())
	}
}

// TestTorgenDueFollowsTorRefresh: the timer's run (`--trigger
// proxy-torgen.timer`, or --due) generates only when nothing was
// discovered yet, tor.refresh has passed or the config was edited since
// the last discovery; a run by hand or by the path unit always does.
// tor.runner process makes a run that gets past the question fail at once
// with its own error, so no systemd is touched.
func TestTorgenDueFollowsTorRefresh(t *testing.T) {
	dir := t.TempDir()
	conf := torgenConfig(t, dir, "single")
	b, _ := os.ReadFile(conf)
	s := strings.Replace(string(b), "  torrc-dir:", "  runner: process\n  refresh: 6h\n  torrc-dir:", 1)
	s = strings.Replace(s, "level: warn", "level: info", 1)
	if err := os.WriteFile(conf, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	torgenRun := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := mainArgs(append([]string{"--config", conf, "torgen"}, args...), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	ran := func(code int, out string) bool { return code != 0 && strings.Contains(out, "tor.runner process") }

	if code, out := torgenRun("--trigger", "proxy-torgen.timer"); !ran(code, out) || !strings.Contains(out, "no discovery recorded") {
		t.Fatalf("timer run with nothing discovered: exit %d, want it to generate:\n%s", code, out)
	}
	// a discovery now, and a config older than it
	applyTorgen(t, conf)
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(conf, old, old); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--trigger", "proxy-torgen.timer"}, {"--due"}} {
		if code, out := torgenRun(args...); code != 0 || !strings.Contains(out, "not due") || !strings.Contains(out, "tor.refresh 6h0m0s") {
			t.Errorf("torgen %v right after a discovery: exit %d, want 0 and a 'not due' line:\n%s", args, code, out)
		}
	}
	for _, args := range [][]string{nil, {"--trigger", "proxy-torgen.path"}, {"--trigger="}} {
		if code, out := torgenRun(args...); !ran(code, out) {
			t.Errorf("torgen %v (by hand, the path unit): exit %d, want it to generate:\n%s", args, code, out)
		}
	}
	now := time.Now()
	if err := os.Chtimes(conf, now, now); err != nil {
		t.Fatal(err)
	}
	if code, out := torgenRun("--due"); !ran(code, out) || !strings.Contains(out, "config was edited") {
		t.Errorf("torgen --due after a config edit: exit %d, want it to generate:\n%s", code, out)
	}
}
