package clashapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// providerJSON is mihomo's proxy provider (adapter/provider providerForApi).
type providerJSON struct {
	Name             string      `json:"name"`
	Type             string      `json:"type"`
	VehicleType      string      `json:"vehicleType"`
	Proxies          []proxyJSON `json:"proxies"`
	TestURL          string      `json:"testUrl"`
	ExpectedStatus   string      `json:"expectedStatus"`
	UpdatedAt        time.Time   `json:"updatedAt,omitzero"`
	SubscriptionInfo *struct{}   `json:"subscriptionInfo,omitempty"`
	Info             *extra      `json:"proxypool,omitempty"`
}

func (h *handler) providerJSON(s *Source) providerJSON {
	ps := make([]proxyJSON, 0, len(s.Members))
	for i := range s.Members {
		ps = append(ps, h.upstreamJSON(&s.Members[i], s.Name))
	}
	vehicle := "HTTP"
	if strings.HasPrefix(s.URL, "file:") {
		vehicle = "File"
	}
	v := providerJSON{Name: s.Name, Type: "Proxy", VehicleType: vehicle, Proxies: ps, ExpectedStatus: "*", UpdatedAt: s.UpdatedAt}
	if s.Total > len(s.Members) {
		v.Info = &extra{Listed: len(s.Members), Total: s.Total, History: []Delay{},
			Note: "lists its best " + strconv.Itoa(len(s.Members)) + " of " + strconv.Itoa(s.Total) + " upstreams (clash group limit)"}
	}
	return v
}

func (h *handler) findSource(w http.ResponseWriter, r *http.Request) (*Source, bool) {
	srcs, err := h.b.Sources(r.Context(), h.o.GroupLimit)
	if err != nil {
		backendError(w, err)
		return nil, false
	}
	name := r.PathValue("provider")
	for i := range srcs {
		if srcs[i].Name == name {
			return &srcs[i], true
		}
	}
	writeError(w, http.StatusNotFound, errNotFoundMsg)
	return nil, false
}

// providers is one provider per source; {"providers":{}} when there are none.
func (h *handler) providers(w http.ResponseWriter, r *http.Request) {
	srcs, err := h.b.Sources(r.Context(), h.o.GroupLimit)
	if err != nil {
		backendError(w, err)
		return
	}
	out := make(map[string]providerJSON, len(srcs))
	for i := range srcs {
		out[srcs[i].Name] = h.providerJSON(&srcs[i])
	}
	writeJSON(w, http.StatusOK, map[string]any{"providers": out})
}

func (h *handler) provider(w http.ResponseWriter, r *http.Request) {
	if s, ok := h.findSource(w, r); ok {
		writeJSON(w, http.StatusOK, h.providerJSON(s))
	}
}

// updateProvider would refetch a source; that is the refresh job's
// (proxypoolctl refresh, /api/v1), which this handler does not run.
func (h *handler) updateProvider(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.findSource(w, r); ok {
		writeError(w, http.StatusServiceUnavailable, "sources are refreshed by proxypoolctl refresh or POST /api/v1/refresh")
	}
}

// providerHealth runs the delay test through the listed members, like
// mihomo's provider health check, and answers 204 when they are done.
func (h *handler) providerHealth(w http.ResponseWriter, r *http.Request) {
	s, ok := h.findSource(w, r)
	if !ok {
		return
	}
	names := make([]string, 0, len(s.Members))
	for _, p := range s.Members {
		names = append(names, p.Name)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	h.fanout(ctx, names, healthURL)
	w.WriteHeader(http.StatusNoContent)
}

// healthURL is what a provider health check fetches (mihomo's default test URL).
const healthURL = "https://www.gstatic.com/generate_204"

func (h *handler) providerProxy(w http.ResponseWriter, r *http.Request) {
	s, ok := h.findSource(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	for i := range s.Members {
		if s.Members[i].Name == name {
			writeJSON(w, http.StatusOK, h.upstreamJSON(&s.Members[i], s.Name))
			return
		}
	}
	p, err := h.b.Proxy(r.Context(), name)
	if err != nil {
		backendError(w, err)
		return
	}
	if !contains(p.Sources, s.Name) {
		writeError(w, http.StatusNotFound, errNotFoundMsg)
		return
	}
	writeJSON(w, http.StatusOK, h.upstreamJSON(&p, s.Name))
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// stream is one long answer: a WebSocket when the request asks to
// upgrade (dashboards), else chunked JSON lines (curl), as mihomo does.
type stream struct {
	ctx  context.Context
	conn net.Conn            // WebSocket, or nil
	w    http.ResponseWriter // plain
	rc   *http.ResponseController
	buf  bytes.Buffer
}

// openStream upgrades or starts the plain answer. Its context ends when
// the client goes (a WebSocket's close frame or a read error).
func openStream(w http.ResponseWriter, r *http.Request) (*stream, context.CancelFunc, bool) {
	ctx, cancel := context.WithCancel(r.Context())
	s := &stream{ctx: ctx}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		s.w, s.rc = w, http.NewResponseController(w)
		// the server's write timeout is for answers, not for a stream
		s.rc.SetWriteDeadline(time.Time{})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		s.rc.Flush()
		return s, cancel, true
	}
	conn, _, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		cancel() // gobwas has answered the client already
		return nil, nil, false
	}
	conn.SetDeadline(time.Time{})
	s.conn = conn
	go func() {
		// Reading is how a close is seen; dashboards send nothing else.
		defer cancel()
		for {
			if _, _, err := wsutil.ReadClientData(conn); err != nil {
				return
			}
		}
	}()
	context.AfterFunc(ctx, func() { conn.Close() })
	return s, cancel, true
}

// send writes one JSON value (one WebSocket text frame, or one line).
func (s *stream) send(v any) error {
	s.buf.Reset()
	if err := json.NewEncoder(&s.buf).Encode(v); err != nil {
		return err
	}
	if s.conn != nil {
		s.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		return wsutil.WriteServerText(s.conn, s.buf.Bytes())
	}
	if _, err := s.w.Write(s.buf.Bytes()); err != nil {
		return err
	}
	return s.rc.Flush()
}

// every sends next()'s value now and then every interval until the
// client leaves or next fails.
func (s *stream) every(interval time.Duration, next func() (any, error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		v, err := next()
		if err != nil || s.send(v) != nil {
			return
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// trafficJSON is mihomo's route.Traffic: rates per second and totals.
type trafficJSON struct {
	Up        int64 `json:"up"`
	Down      int64 `json:"down"`
	UpTotal   int64 `json:"upTotal"`
	DownTotal int64 `json:"downTotal"`
}

func (h *handler) traffic(w http.ResponseWriter, r *http.Request) {
	s, cancel, ok := openStream(w, r)
	if !ok {
		return
	}
	defer cancel()
	var last *GatewayStats
	var lastAt time.Time
	s.every(h.o.Tick, func() (any, error) {
		g, err := h.b.Gateway(s.ctx)
		if err != nil {
			return nil, err
		}
		now := time.Now()
		v := trafficJSON{UpTotal: g.UpTotal, DownTotal: g.DownTotal}
		if last != nil {
			secs := now.Sub(lastAt).Seconds()
			v.Up = int64(float64(max(g.UpTotal-last.UpTotal, 0)) / secs)
			v.Down = int64(float64(max(g.DownTotal-last.DownTotal, 0)) / secs)
		}
		last, lastAt = &g, now
		return v, nil
	})
}

func (h *handler) memory(w http.ResponseWriter, r *http.Request) {
	s, cancel, ok := openStream(w, r)
	if !ok {
		return
	}
	defer cancel()
	first := true
	s.every(h.o.Tick, func() (any, error) {
		g, err := h.b.Gateway(s.ctx)
		if err != nil {
			return nil, err
		}
		v := map[string]uint64{"inuse": g.Memory, "oslimit": 0}
		if first {
			// mihomo sends 0 first so a dashboard's chart starts at zero
			v["inuse"], first = 0, false
		}
		return v, nil
	})
}

// connJSON is mihomo's statistic.TrackerInfo with its metadata.
type connJSON struct {
	ID             string       `json:"id"`
	Metadata       metadataJSON `json:"metadata"`
	Upload         int64        `json:"upload"`
	Download       int64        `json:"download"`
	Start          time.Time    `json:"start"`
	Chains         []string     `json:"chains"`
	ProviderChains []string     `json:"providerChains"`
	Rule           string       `json:"rule"`
	RulePayload    string       `json:"rulePayload"`
}

type metadataJSON struct {
	Network         string   `json:"network"`
	Type            string   `json:"type"`
	SourceIP        string   `json:"sourceIP"`
	DestinationIP   string   `json:"destinationIP"`
	SourceGeoIP     []string `json:"sourceGeoIP"`
	DestinationGeo  []string `json:"destinationGeoIP"`
	SourceIPASN     string   `json:"sourceIPASN"`
	DestinationASN  string   `json:"destinationIPASN"`
	SourcePort      string   `json:"sourcePort"`
	DestinationPort string   `json:"destinationPort"`
	InboundIP       string   `json:"inboundIP"`
	InboundPort     string   `json:"inboundPort"`
	InboundName     string   `json:"inboundName"`
	InboundUser     string   `json:"inboundUser"`
	Host            string   `json:"host"`
	DNSMode         string   `json:"dnsMode"`
	UID             uint32   `json:"uid"`
	Process         string   `json:"process"`
	ProcessPath     string   `json:"processPath"`
	SpecialProxy    string   `json:"specialProxy"`
	SpecialRules    string   `json:"specialRules"`
	RemoteDst       string   `json:"remoteDestination"`
	DSCP            uint8    `json:"dscp"`
	SniffHost       string   `json:"sniffHost"`
}

type snapshotJSON struct {
	DownloadTotal int64      `json:"downloadTotal"`
	UploadTotal   int64      `json:"uploadTotal"`
	Connections   []connJSON `json:"connections"`
	Memory        uint64     `json:"memory"`
}

func snapshotOf(g GatewayStats) snapshotJSON {
	out := snapshotJSON{DownloadTotal: g.DownTotal, UploadTotal: g.UpTotal, Memory: g.Memory, Connections: make([]connJSON, 0, len(g.Conns))}
	for _, c := range g.Conns {
		src, sport, _ := net.SplitHostPort(c.Client)
		host, dport, _ := net.SplitHostPort(c.Target)
		dst := ""
		if ip := net.ParseIP(host); ip != nil {
			dst, host = host, ""
		}
		chain := []string{c.Upstream}
		if c.Group != "" {
			chain = append(chain, c.Group)
		}
		out.Connections = append(out.Connections, connJSON{
			ID: c.ID, Upload: c.Up, Download: c.Down, Start: c.Start, Chains: chain, ProviderChains: []string{},
			Rule: "Match", RulePayload: "",
			Metadata: metadataJSON{Network: c.Network, Type: c.Proto, SourceIP: src, SourcePort: sport,
				DestinationIP: dst, DestinationPort: dport, Host: host, InboundName: c.Listener,
				SourceGeoIP: []string{}, DestinationGeo: []string{}, DNSMode: "normal"},
		})
	}
	return out
}

// connections is GET /connections: one snapshot as JSON, or over a
// WebSocket one every ?interval= milliseconds (default 1000).
func (h *handler) connections(w http.ResponseWriter, r *http.Request) {
	interval := time.Second
	if v := r.URL.Query().Get("interval"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			writeError(w, http.StatusBadRequest, errBadRequest)
			return
		}
		interval = max(time.Duration(ms)*time.Millisecond, 100*time.Millisecond)
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		g, err := h.b.Gateway(r.Context())
		if err != nil {
			backendError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, snapshotOf(g))
		return
	}
	s, cancel, ok := openStream(w, r)
	if !ok {
		return
	}
	defer cancel()
	s.every(interval, func() (any, error) {
		g, err := h.b.Gateway(s.ctx)
		if err != nil {
			return nil, err
		}
		return snapshotOf(g), nil
	})
}

func (h *handler) closeConns(w http.ResponseWriter, r *http.Request) {
	var ids []string
	if id := r.PathValue("id"); id != "" {
		ids = []string{id}
	}
	if err := h.b.CloseConns(r.Context(), ids...); err != nil {
		backendError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// logs is GET /logs?level=: the daemon's log lines at level and above
// (mihomo's names: debug, info, warning, error, silent), and with
// ?format=structured mihomo's structured shape.
func (h *handler) logs(w http.ResponseWriter, r *http.Request) {
	lvl := r.URL.Query().Get("level")
	if lvl == "" {
		lvl = "info"
	}
	min, ok := levelRank[lvl]
	if !ok {
		writeError(w, http.StatusBadRequest, errBadRequest)
		return
	}
	structured := r.URL.Query().Get("format") == "structured"
	s, cancel, ok := openStream(w, r)
	if !ok {
		return
	}
	defer cancel()
	if h.o.Logs == nil {
		<-s.ctx.Done()
		return
	}
	ch, stop := h.o.Logs.subscribe()
	defer stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case e := <-ch:
			if levelRank[e.Level] < min {
				continue
			}
			var v any = map[string]string{"type": e.Level, "payload": e.Message}
			if structured {
				l := e.Level
				if l == "warning" {
					l = "warn"
				}
				v = map[string]any{"time": e.Time.Format(time.TimeOnly), "level": l, "message": e.Message, "fields": []any{}}
			}
			if s.send(v) != nil {
				return
			}
		}
	}
}
