package pgtest

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/proxypool/proxypool/internal/testtool"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestCluster: the cluster serves over its socket only, as an
// unprivileged role (never root), each Database is its own and empty, and
// Stop leaves nothing behind.
func TestCluster(t *testing.T) {
	ctx := context.Background()
	a, b := Database(t), Database(t)
	if a == b {
		t.Fatalf("two tests got one database %s", a)
	}
	conn, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var listen, owner string
	if err := conn.QueryRow(ctx, "SELECT current_setting('listen_addresses')").Scan(&listen); err != nil || listen != "" {
		t.Errorf("listen_addresses = %q, %v; want none (socket only)", listen, err)
	}
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()").Scan(&owner); err != nil || owner != Superuser {
		t.Errorf("database owner %q, %v; want %s", owner, err, Superuser)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE x (id int)"); err != nil {
		t.Fatal(err)
	}
	conn2, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close(ctx)
	var n int
	if err := conn2.QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").Scan(&n); err != nil || n != 0 {
		t.Errorf("the second database has %d tables (%v); want a fresh one", n, err)
	}
	// The server process runs as the caller, or as nobody for root.
	shared.mu.Lock()
	c := shared.c
	shared.mu.Unlock()
	status, err := os.ReadFile("/proc/" + strconv.Itoa(c.cmd.Process.Pid) + "/status")
	if err != nil {
		t.Fatalf("no status of the server process: %v", err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "Uid:") && strings.Fields(l)[1] == "0" {
			t.Errorf("postgres runs as root: %s", l)
		}
	}
}

// TestStartStop: a cluster of one's own starts and Stop removes its
// directory.
func TestStartStop(t *testing.T) {
	bin, err := BinDir()
	if err != nil {
		testtool.Need(t, "initdb", "apt-get install postgresql")
		t.Fatalf("finding PostgreSQL: %v", err)
	}
	c, err := Start(context.Background(), bin)
	if err != nil {
		t.Fatal(err)
	}
	dir := c.Dir()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("cluster directory %s left after Stop: %v", dir, err)
	}
	if _, err := pgx.Connect(context.Background(), c.URL("postgres")); err == nil {
		t.Errorf("the server still answers after Stop")
	}
}
