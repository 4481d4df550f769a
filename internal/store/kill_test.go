package store

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/store/pgtest"
	"github.com/proxypool/proxypool/internal/upstream"
)

// The kill test re-executes this test binary as a writer child.
const (
	childEnv     = "PROXYPOOL_STORE_KILL_CHILD" // database path
	childBaseEnv = "PROXYPOOL_STORE_KILL_BASE"  // first sequence number
	killBatch    = 1000                         // upstreams per UpsertSource transaction
	killMarked   = 200                          // of which get a result before the ack
)

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		base, _ := strconv.Atoi(os.Getenv(childBaseEnv))
		if err := killChild(path, base); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(pgtest.Main(m))
}

func killUps(seq int) []upstream.Upstream {
	out := make([]upstream.Upstream, killBatch)
	for i := range out {
		out[i] = upstream.MustNew(map[string]any{
			"type": "socks5", "server": fmt.Sprintf("s%d.kill.test", seq), "port": i + 1, "username": "u",
		})
	}
	return out
}

// killChild imports batches forever, printing "ack N" after batch N (its
// source and the results for its first killMarked upstreams) committed,
// while a second goroutine storms results at earlier batches.
func killChild(path string, base int) error {
	ctx := context.Background()
	start := time.Now()
	s, err := Open(ctx, path, Options{FlushInterval: 5 * time.Millisecond})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "open %v\n", time.Since(start))
	var mu sync.Mutex
	var known []string
	go func() {
		// The storm: bursts of results for earlier batches, ~6k/s at most.
		for i := 0; ; i++ {
			if i%64 == 0 {
				time.Sleep(10 * time.Millisecond)
			}
			mu.Lock()
			n := len(known)
			var id string
			if n > 0 {
				id = known[rand.IntN(n)]
			}
			mu.Unlock()
			if n == 0 {
				continue
			}
			if i%3 == 0 {
				s.Submit(fail(id, time.Now()))
			} else {
				s.Submit(ok(id, time.Now(), "1.1.1.1", "US"))
			}
		}
	}()
	for seq := base; ; seq++ {
		us := killUps(seq)
		if _, err := s.UpsertSource(ctx, upstream.SourceMeta{Name: fmt.Sprint("seq-", seq), Lines: seq}, us); err != nil {
			return err
		}
		for _, u := range us[:killMarked] {
			s.Submit(ok(u.ID, time.Now(), "2.2.2.2", "DE"))
		}
		if err := s.Flush(ctx); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "seq %d at %v\n", seq, time.Since(start))
		if _, err := fmt.Fprintf(os.Stdout, "ack %d\n", seq); err != nil {
			return err
		}
		mu.Lock()
		for _, u := range us[:100] {
			known = append(known, u.ID)
		}
		mu.Unlock()
	}
}

func TestKill9Durability(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns writer processes")
	}
	path := filepath.Join(t.TempDir(), "kill.db")
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)
	const rounds = 5
	acked := map[int]bool{}
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+path, childBaseEnv+"="+strconv.Itoa(round*100_000))
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var lines []string
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines = append(lines, sc.Text())
			}
		}()
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: child exited by itself (%v): %s", round, err, stderr.String())
		}
		n := 0
		for _, l := range lines {
			seq, err := strconv.Atoi(strings.TrimPrefix(l, "ack "))
			if err != nil {
				t.Fatalf("round %d: child said %q", round, l)
			}
			acked[seq] = true
			n++
		}
		if strings.Contains(stderr.String(), "child:") {
			t.Fatalf("round %d: child failed: %s", round, stderr.String())
		}
		verifyAfterKill(t, path, acked)
		t.Logf("round %d: killed after %d acknowledged transactions", round, n)
	}
	if len(acked) == 0 {
		t.Fatal("no transaction was ever acknowledged")
	}
}

func verifyAfterKill(t *testing.T, path string, acked map[int]bool) {
	t.Helper()
	ctx := context.Background()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var integrity string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&integrity); err != nil {
		t.Fatal(err)
	}
	if integrity != "ok" {
		t.Fatalf("integrity_check: %s", integrity)
	}
	// Every source present is complete: a transaction is all or nothing.
	rows, err := db.Query(`SELECT name, total, (SELECT count(*) FROM upstream_sources x WHERE x.source = s.name)
		FROM sources s`)
	if err != nil {
		if len(acked) == 0 && strings.Contains(err.Error(), "no such table") {
			return // killed before the schema committed
		}
		t.Fatal(err)
	}
	present := map[int]bool{}
	for rows.Next() {
		var name string
		var total, links int
		if err := rows.Scan(&name, &total, &links); err != nil {
			t.Fatal(err)
		}
		if total != killBatch || links != killBatch {
			t.Fatalf("source %s: total %d, %d links; want %d", name, total, links, killBatch)
		}
		seq, _ := strconv.Atoi(strings.TrimPrefix(name, "seq-"))
		present[seq] = true
	}
	rows.Close()
	for seq := range acked {
		if !present[seq] {
			t.Fatalf("acknowledged transaction %d is missing", seq)
		}
		var checked int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM upstream_sources x JOIN upstreams u ON u.id = x.upstream_id
			WHERE x.source = ? AND u.checks > 0`, fmt.Sprint("seq-", seq)).Scan(&checked); err != nil {
			t.Fatal(err)
		}
		if checked < killMarked {
			t.Fatalf("transaction %d: %d upstreams have results, want at least %d acknowledged", seq, checked, killMarked)
		}
	}
	// The store opens cleanly afterwards, read-only and read-write.
	r, err := OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Counts(ctx); err != nil {
		t.Fatal(err)
	}
	r.Close()
}
