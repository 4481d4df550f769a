package clashapi

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/sirupsen/logrus"
)

// TestLogs: the daemon's log lines reach GET /logs at the level asked
// for and above, over a WebSocket and as a plain stream, in mihomo's
// shapes.
func TestLogs(t *testing.T) {
	hub := NewLogHub()
	log := logrus.New()
	log.Out = io.Discard
	log.SetLevel(logrus.DebugLevel)
	log.AddHook(hub)
	srv := httptest.NewServer(New(nil, Options{Logs: hub}))
	defer srv.Close()
	tests := []struct {
		name, query string
		ws          bool
		want        map[string]any // the first line that passes the level
	}{
		{"ws warning", "?level=warning", true, map[string]any{"type": "warning", "payload": "upstream gone id=abc"}},
		{"ws debug", "?level=debug", true, map[string]any{"type": "debug", "payload": "detail"}},
		{"plain info", "", false, map[string]any{"type": "info", "payload": "checked n=3"}},
		{"structured error", "?level=error&format=structured", true, map[string]any{"level": "error", "message": "store down"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var next func() ([]byte, error)
			if tt.ws {
				conn, br, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/logs"+tt.query)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				if br != nil {
					t.Fatal("the server sent a frame before any line was logged")
				}
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				next = func() ([]byte, error) { return wsutil.ReadServerText(conn) }
			} else {
				req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/logs"+tt.query, nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				br := bufio.NewReader(resp.Body)
				next = func() ([]byte, error) { return br.ReadBytes('\n') }
			}
			// The stream subscribes once the handler runs: log a round
			// of every level until the wanted line arrives; no line below
			// the level asked for may come first.
			lines := make(chan map[string]any, 64)
			go func() {
				defer close(lines)
				for {
					b, err := next()
					if err != nil {
						return
					}
					var m map[string]any
					json.Unmarshal(b, &m)
					lines <- m
				}
			}()
			min := tt.query
			for {
				log.Debug("detail")
				log.WithField("n", 3).Info("checked")
				log.WithField("id", "abc").Warn("upstream gone")
				log.Error("store down")
				select {
				case m, ok := <-lines:
					if !ok {
						t.Fatal("the stream ended")
					}
					lvl, _ := m["type"].(string)
					if lvl == "" {
						lvl, _ = m["level"].(string)
					}
					if lvl == "warn" {
						lvl = "warning"
					}
					if want := wantLevel(min); levelRank[lvl] < levelRank[want] {
						t.Fatalf("got %v on a stream at level %s", m, want)
					}
					match := true
					for k, v := range tt.want {
						match = match && m[k] == v
					}
					if match {
						return
					}
				case <-time.After(100 * time.Millisecond):
				case <-ctx.Done():
					t.Fatal("the wanted log line did not arrive within 10s")
				}
			}
		})
	}
}

// wantLevel is the level a /logs query asks for (info by default).
func wantLevel(query string) string {
	for _, kv := range strings.Split(strings.TrimPrefix(query, "?"), "&") {
		if v, ok := strings.CutPrefix(kv, "level="); ok {
			return v
		}
	}
	return "info"
}
