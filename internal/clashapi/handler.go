package clashapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure the handler. Zero values take the documented defaults.
type Options struct {
	Version   string // proxypool's version, shown as "proxypool <Version>"
	MixedPort int    // the gateway's main port, for GET /configs
	AllowLAN  bool   // whether the gateway listens beyond loopback
	// GroupLimit caps the members a group, port or provider lists (its
	// best first; default 200): a 10,000-member group would freeze a
	// dashboard that draws a card per member. The group's extra says how
	// many it has in all.
	GroupLimit int
	// PinTTL is how long PUT /proxies/{group} pins a group when the
	// request names no ttl (default 1h).
	PinTTL time.Duration
	// Fanout bounds the delay tests a group or provider health check
	// runs at once (default 16).
	Fanout int
	// Logs, if set, feeds GET /logs; without it /logs streams nothing.
	Logs *LogHub
	// Tick is the interval of the /traffic and /memory streams (default 1s).
	Tick time.Duration
	// TestURL is the groups' testUrl, which dashboards use for their
	// delay tests (a judge suits; offline hosts cannot reach the
	// dashboards' default, gstatic.com); "" leaves it to the dashboard.
	// Upstreams' extra carries their history under it.
	TestURL string
}

// GlobalName is the synthetic Selector mihomo always has; dashboards show
// it in global mode. Here it lists the groups and ports.
const GlobalName = "GLOBAL"

type handler struct {
	b   Backend
	o   Options
	mux *http.ServeMux
}

// New returns the external-controller handler over b.
func New(b Backend, o Options) http.Handler {
	if o.GroupLimit <= 0 {
		o.GroupLimit = 200
	}
	if o.PinTTL <= 0 {
		o.PinTTL = time.Hour
	}
	if o.Fanout <= 0 {
		o.Fanout = 16
	}
	if o.Tick <= 0 {
		o.Tick = time.Second
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	h := &handler{b: b, o: o, mux: http.NewServeMux()}
	m := h.mux
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"hello": "proxypool"})
	})
	m.HandleFunc("GET /version", h.version)
	m.HandleFunc("GET /configs", h.configs)
	m.HandleFunc("PATCH /configs", h.patchConfigs)
	m.HandleFunc("PUT /configs", h.patchConfigs)
	m.HandleFunc("GET /proxies", h.proxies)
	m.HandleFunc("GET /proxies/{name}", h.proxy)
	m.HandleFunc("GET /proxies/{name}/delay", h.proxyDelay)
	m.HandleFunc("PUT /proxies/{name}", h.pin)
	m.HandleFunc("DELETE /proxies/{name}", h.unpin)
	m.HandleFunc("GET /group", h.groups)
	m.HandleFunc("GET /group/{name}", h.group)
	m.HandleFunc("GET /group/{name}/delay", h.groupDelay)
	m.HandleFunc("GET /providers/proxies", h.providers)
	m.HandleFunc("GET /providers/proxies/{provider}", h.provider)
	m.HandleFunc("PUT /providers/proxies/{provider}", h.updateProvider)
	m.HandleFunc("GET /providers/proxies/{provider}/healthcheck", h.providerHealth)
	m.HandleFunc("GET /providers/proxies/{provider}/{name}", h.providerProxy)
	m.HandleFunc("GET /providers/proxies/{provider}/{name}/healthcheck", h.proxyDelay)
	m.HandleFunc("GET /providers/rules", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"providers": map[string]any{}})
	})
	// The gateway has no rules: every request goes to the pool.
	m.HandleFunc("GET /rules", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"rules": []any{}})
	})
	m.HandleFunc("GET /connections", h.connections)
	m.HandleFunc("DELETE /connections", h.closeConns)
	m.HandleFunc("DELETE /connections/{id}", h.closeConns)
	m.HandleFunc("GET /traffic", h.traffic)
	m.HandleFunc("GET /memory", h.memory)
	m.HandleFunc("GET /logs", h.logs)
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// mihomo answers an unknown path with chi's plain 404; a JSON one
	// reads the same to a dashboard and is clearer to a script.
	if _, pattern := h.mux.Handler(r); pattern == "" {
		h.mux.ServeHTTP(&jsonNotFound{ResponseWriter: w}, r) // a 404 or a 405
		return
	}
	h.mux.ServeHTTP(w, r)
}

// jsonNotFound turns the mux's plain-text 404 into mihomo's JSON one and
// lets a 405 (a known path, another method) through.
type jsonNotFound struct {
	http.ResponseWriter
	hit bool
}

func (j *jsonNotFound) WriteHeader(code int) {
	if code != http.StatusNotFound {
		j.ResponseWriter.WriteHeader(code)
		return
	}
	j.hit = true
	j.Header().Del("X-Content-Type-Options")
	writeError(j.ResponseWriter, code, errNotFoundMsg)
}

func (j *jsonNotFound) Write(b []byte) (int, error) {
	if j.hit {
		return len(b), nil
	}
	return j.ResponseWriter.Write(b)
}

// mihomo's error messages (hub/route/errors.go), which dashboards match.
const (
	errNotFoundMsg = "Resource not found"
	errBadRequest  = "Body invalid"
	errTimeout     = "Timeout"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encoding the answer: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(map[string]string{"message": msg})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// backendError answers a Backend's error: 404 for ErrNotFound, 503 with
// its words otherwise.
func backendError(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, errNotFoundMsg)
		return
	}
	writeError(w, http.StatusServiceUnavailable, err.Error())
}

func (h *handler) version(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"version": "proxypool " + h.o.Version, "meta": true})
}

// configs is mihomo's GET /configs with what the gateway has: one mixed
// port, rule mode (there are no rules: the pool is the only way out).
func (h *handler) configs(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"port": 0, "socks-port": 0, "redir-port": 0, "tproxy-port": 0,
		"mixed-port": h.o.MixedPort, "allow-lan": h.o.AllowLAN, "bind-address": "*",
		"mode": "rule", "log-level": "info", "ipv6": true, "sniffing": false, "tcp-concurrent": false,
		"unified-delay": false, "interface-name": "", "find-process-mode": "off",
		"tun": map[string]any{"enable": false}, "tuic-server": map[string]any{"enable": false},
		"lan-allowed-ips": []string{}, "lan-disallowed-ips": []string{}, "skip-auth-prefixes": []string{},
		"authentication": []string{}, "geodata-mode": false, "geo-auto-update": false,
	})
}

// patchConfigs takes a valid JSON object and changes nothing: the
// gateway's settings live in proxypool.yaml (mihomo's PATCH also answers
// 204).
func (h *handler) patchConfigs(w http.ResponseWriter, r *http.Request) {
	var v map[string]any
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&v); err != nil {
		writeError(w, http.StatusBadRequest, errBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// proxyJSON is an upstream in mihomo's shape (adapter.Proxy.MarshalJSON),
// plus what proxypool knows of it under "proxypool".
type proxyJSON struct {
	Name        string           `json:"name"`
	Type        string           `json:"type"`
	ID          string           `json:"id"`
	UDP         bool             `json:"udp"`
	UoT         bool             `json:"uot"`
	XUDP        bool             `json:"xudp"`
	TFO         bool             `json:"tfo"`
	MPTCP       bool             `json:"mptcp"`
	SMUX        bool             `json:"smux"`
	Interface   string           `json:"interface"`
	RoutingMark int              `json:"routing-mark"`
	Provider    string           `json:"provider-name"`
	DialerProxy string           `json:"dialer-proxy"`
	Alive       bool             `json:"alive"`
	History     []Delay          `json:"history"`
	Extra       map[string]extra `json:"extra"`
	Info        *proxyInfo       `json:"proxypool,omitempty"`
	// groups only
	All            []string `json:"all,omitempty"`
	Now            *string  `json:"now,omitempty"`
	TestURL        *string  `json:"testUrl,omitempty"`
	ExpectedStatus *string  `json:"expectedStatus,omitempty"`
	Hidden         *bool    `json:"hidden,omitempty"`
	Icon           *string  `json:"icon,omitempty"`
}

// extra is mihomo's per-test-URL state; proxypool adds what a capped
// group left out under the key "proxypool".
type extra struct {
	Alive   bool    `json:"alive"`
	History []Delay `json:"history"`
	Listed  int     `json:"listed,omitempty"`
	Total   int     `json:"total,omitempty"`
	Note    string  `json:"note,omitempty"`
}

type proxyInfo struct {
	Title     string    `json:"title,omitempty"`
	Server    string    `json:"server,omitempty"`
	Port      int       `json:"port,omitempty"`
	State     string    `json:"state,omitempty"`
	ExitIP    string    `json:"exit_ip,omitempty"`
	Country   string    `json:"country,omitempty"`
	LatencyMS float64   `json:"latency_ms,omitempty"`
	Sources   []string  `json:"sources,omitempty"`
	Listen    string    `json:"listen,omitempty"`
	Until     time.Time `json:"pinned_until,omitzero"`
}

var noExtra = map[string]extra{}

func (h *handler) upstreamJSON(p *Proxy, provider string) proxyJSON {
	hist := p.History
	if hist == nil {
		hist = []Delay{}
	}
	x := noExtra
	if h.o.TestURL != "" {
		x = map[string]extra{h.o.TestURL: {Alive: p.Alive, History: hist}}
	}
	return proxyJSON{
		Name: p.Name, Type: mihomoType(p.Type), ID: p.Name, UDP: p.UDP, Alive: p.Alive, History: hist, Extra: x,
		Provider: provider,
		Info: &proxyInfo{Title: p.Title, Server: p.Server, Port: p.Port, State: p.State, ExitIP: p.ExitIP,
			Country: p.Country, LatencyMS: p.LatencyMS, Sources: p.Sources},
	}
}

// mihomoType is the adapter type name mihomo would show for a kind
// (C.AdapterType.String()); dashboards pick icons by it.
func mihomoType(kind string) string {
	switch strings.ToLower(kind) {
	case "socks5", "socks", "tor":
		return "Socks5"
	case "socks4", "socks4a":
		return "Socks4"
	case "http", "https":
		return "Http"
	case "ss", "shadowsocks":
		return "Shadowsocks"
	case "ssr":
		return "ShadowsocksR"
	case "vmess":
		return "Vmess"
	case "vless":
		return "Vless"
	case "trojan":
		return "Trojan"
	case "hysteria":
		return "Hysteria"
	case "hysteria2", "hy2":
		return "Hysteria2"
	case "tuic":
		return "Tuic"
	case "wireguard", "wg":
		return "WireGuard"
	case "snell":
		return "Snell"
	case "anytls":
		return "AnyTLS"
	case "ssh":
		return "Ssh"
	case "mieru":
		return "Mieru"
	}
	if kind == "" {
		return "Unknown"
	}
	return strings.ToUpper(kind[:1]) + kind[1:]
}

func (h *handler) groupJSON(g *Group) proxyJSON {
	now := g.Pinned
	if now == "" && len(g.Members) > 0 {
		now = g.Members[0]
	}
	empty, hidden, status := "", false, "*"
	test := h.o.TestURL
	all := g.Members
	if all == nil {
		all = []string{}
	}
	x := map[string]extra{}
	note := "pinned to " + g.Pinned
	if g.Pinned == "" {
		note = "balanced over its members"
	}
	if g.Total > len(g.Members) {
		note = fmt.Sprintf("lists its best %d of %d members (clash group limit)", len(g.Members), g.Total)
	}
	x["proxypool"] = extra{Alive: len(g.Members) > 0, History: []Delay{}, Listed: len(g.Members), Total: g.Total, Note: note}
	return proxyJSON{
		Name: g.Name, Type: "LoadBalance", UDP: false, Alive: len(g.Members) > 0, History: []Delay{}, Extra: x,
		All: all, Now: &now, TestURL: &test, ExpectedStatus: &status, Hidden: &hidden, Icon: &empty,
		Info: &proxyInfo{Listen: g.Listen, Until: g.PinnedUntil},
	}
}

func (h *handler) globalJSON(groups []Group) proxyJSON {
	all := make([]string, 0, len(groups))
	for _, g := range groups {
		all = append(all, g.Name)
	}
	now := ""
	if len(all) > 0 {
		now = all[0]
	}
	empty, hidden := "", false
	return proxyJSON{Name: GlobalName, Type: "Selector", UDP: true, Alive: true, History: []Delay{}, Extra: noExtra,
		All: all, Now: &now, TestURL: &empty, Hidden: &hidden, Icon: &empty}
}

// proxies streams {"proxies":{…}}: the groups, GLOBAL, then every
// upstream as the backend hands them over, so 100,000 upstreams are never
// held at once.
func (h *handler) proxies(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	groups, err := h.b.Groups(ctx, h.o.GroupLimit)
	if err != nil {
		backendError(w, fmt.Errorf("listing groups: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	bw.WriteString(`{"proxies":{`)
	first := true
	put := func(name string, v *proxyJSON) error {
		if !first {
			bw.WriteByte(',')
		}
		first = false
		k, _ := json.Marshal(name)
		bw.Write(k)
		bw.WriteByte(':')
		return enc.Encode(v) // its newline is JSON whitespace
	}
	for i := range groups {
		v := h.groupJSON(&groups[i])
		if err := put(groups[i].Name, &v); err != nil {
			return
		}
	}
	g := h.globalJSON(groups)
	put(GlobalName, &g)
	var buf []byte
	err = h.b.EachProxy(ctx, func(p *Proxy) error {
		bw.WriteByte(',') // GLOBAL came before
		buf = appendString(buf[:0], p.Name)
		buf = append(buf, ':')
		buf = h.appendUpstream(buf, p, "")
		_, err := bw.Write(buf)
		return err
	})
	if err != nil {
		// The status line is gone; end the body with something no JSON
		// parser takes, so a client cannot mistake a part for the whole.
		bw.WriteString("\n\"error\": " + strconv.Quote(err.Error()))
		bw.Flush()
		return
	}
	bw.WriteString("}}\n")
	bw.Flush()
}

// lookup finds a name among the groups (and GLOBAL) or the upstreams.
func (h *handler) lookup(ctx context.Context, name string) (proxyJSON, *Group, error) {
	groups, err := h.b.Groups(ctx, h.o.GroupLimit)
	if err != nil {
		return proxyJSON{}, nil, fmt.Errorf("listing groups: %w", err)
	}
	if name == GlobalName {
		return h.globalJSON(groups), nil, nil
	}
	for i := range groups {
		if groups[i].Name == name {
			return h.groupJSON(&groups[i]), &groups[i], nil
		}
	}
	p, err := h.b.Proxy(ctx, name)
	if err != nil {
		return proxyJSON{}, nil, err
	}
	return h.upstreamJSON(&p, ""), nil, nil
}

func (h *handler) proxy(w http.ResponseWriter, r *http.Request) {
	v, _, err := h.lookup(r.Context(), r.PathValue("name"))
	if err != nil {
		backendError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// delayQuery reads url and timeout (milliseconds) as mihomo does: a
// timeout that is not a 16-bit number is a 400.
func delayQuery(r *http.Request, bits int) (string, time.Duration, bool) {
	q := r.URL.Query()
	t, err := strconv.ParseInt(q.Get("timeout"), 10, bits)
	if err != nil || t <= 0 {
		return "", 0, false
	}
	u, err := url.Parse(q.Get("url"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", 0, false
	}
	return u.String(), time.Duration(t) * time.Millisecond, true
}

// proxyDelay is mihomo's delay test: 200 {"delay":ms}, 504 Timeout when
// the deadline passed, 503 with the error otherwise. A group is tested
// through the member it would use now.
func (h *handler) proxyDelay(w http.ResponseWriter, r *http.Request) {
	target, timeout, ok := delayQuery(r, 16)
	if !ok {
		writeError(w, http.StatusBadRequest, errBadRequest)
		return
	}
	name := r.PathValue("name")
	v, g, err := h.lookup(r.Context(), name)
	if err != nil {
		backendError(w, err)
		return
	}
	if g != nil || name == GlobalName {
		if v.Now == nil || *v.Now == "" {
			writeError(w, http.StatusServiceUnavailable, "An error occurred in the delay test")
			return
		}
		name = *v.Now
		if name == GlobalName || g == nil {
			_, g2, err := h.lookup(r.Context(), name)
			if err != nil || g2 == nil || len(g2.Members) == 0 {
				writeError(w, http.StatusServiceUnavailable, "An error occurred in the delay test")
				return
			}
			name = g2.Members[0]
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	d, err := h.b.Delay(ctx, name, target)
	if ctx.Err() != nil {
		writeError(w, http.StatusGatewayTimeout, errTimeout)
		return
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"delay": delayMS(d)})
}

// delayMS rounds up so a fast answer is never 0, which mihomo means as a
// failure.
func delayMS(d time.Duration) int {
	ms := int((d + time.Millisecond - 1) / time.Millisecond)
	return max(ms, 1)
}

// fanout runs the delay test through each name, at most Fanout at once,
// and returns the delays of those that answered (mihomo's group delay).
func (h *handler) fanout(ctx context.Context, names []string, target string) map[string]int {
	out := make(map[string]int, len(names))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, h.o.Fanout)
	for _, n := range names {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			d, err := h.b.Delay(ctx, n, target)
			if err == nil && ctx.Err() == nil {
				mu.Lock()
				out[n] = delayMS(d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

func (h *handler) groupDelay(w http.ResponseWriter, r *http.Request) {
	target, timeout, ok := delayQuery(r, 32)
	if !ok {
		writeError(w, http.StatusBadRequest, errBadRequest)
		return
	}
	_, g, ok := h.lookupGroup(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	writeJSON(w, http.StatusOK, h.fanout(ctx, g.Members, target))
}

// pin is PUT /proxies/{group} {"name": member}: the group (or port) sends
// every request to that member until DELETE or the TTL (?ttl=30m, or
// Options.PinTTL). mihomo only lets a Selector be set; a proxypool group
// is balanced, so pinning is its nearest meaning.
func (h *handler) pin(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil || req.Name == "" {
		writeError(w, http.StatusBadRequest, errBadRequest)
		return
	}
	ttl := h.o.PinTTL
	if s := r.URL.Query().Get("ttl"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "ttl: want a positive duration such as 30m")
			return
		}
		ttl = d
	}
	h.setPin(w, r, req.Name, ttl)
}

func (h *handler) unpin(w http.ResponseWriter, r *http.Request) { h.setPin(w, r, "", 0) }

func (h *handler) setPin(w http.ResponseWriter, r *http.Request, member string, ttl time.Duration) {
	name := r.PathValue("name")
	if name == GlobalName {
		writeError(w, http.StatusBadRequest, "GLOBAL lists the groups; pin a group instead")
		return
	}
	_, g, err := h.lookup(r.Context(), name)
	if err != nil {
		backendError(w, err)
		return
	}
	if g == nil {
		writeError(w, http.StatusBadRequest, "Must be a group")
		return
	}
	if err := h.b.Pin(r.Context(), name, member, ttl); err != nil {
		if errors.Is(err, ErrNotFound) {
			writeError(w, http.StatusBadRequest, "Selector update error: "+err.Error())
			return
		}
		backendError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) groups(w http.ResponseWriter, r *http.Request) {
	groups, err := h.b.Groups(r.Context(), h.o.GroupLimit)
	if err != nil {
		backendError(w, err)
		return
	}
	out := make([]proxyJSON, 0, len(groups))
	for i := range groups {
		out = append(out, h.groupJSON(&groups[i]))
	}
	writeJSON(w, http.StatusOK, map[string]any{"proxies": out})
}

func (h *handler) group(w http.ResponseWriter, r *http.Request) {
	if v, _, ok := h.lookupGroup(w, r); ok {
		writeJSON(w, http.StatusOK, v)
	}
}

// lookupGroup finds the request's {name} among the groups, answering 404
// for anything else (mihomo's /group/ takes groups only).
func (h *handler) lookupGroup(w http.ResponseWriter, r *http.Request) (proxyJSON, *Group, bool) {
	v, g, err := h.lookup(r.Context(), r.PathValue("name"))
	if err != nil {
		backendError(w, err)
		return v, nil, false
	}
	if g == nil {
		writeError(w, http.StatusNotFound, errNotFoundMsg)
		return v, nil, false
	}
	return v, g, true
}
