package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/upstream"
)

// Prefix is where our own API lives; every other path goes to
// Options.Fallback (the Clash external-controller handler).
const Prefix = "/api/v1"

// Manager is what the API serves: control.Manager (the interface D-Bus
// serves, so both share one implementation, *manager.Manager) plus the
// lookups only HTTP offers.
type Manager interface {
	control.Manager
	// Get returns one upstream; an unknown id wraps control.ErrNotFound.
	Get(ctx context.Context, id string) (upstream.Record, error)
	// Counts are the pool counts (D-Bus has them as properties).
	Counts(ctx context.Context) (control.Counts, error)
}

// Options configure a Server. Manager and Jobs are required.
type Options struct {
	Manager Manager
	// Jobs sees every job's progress (wire Jobs.Emit into the manager's
	// Emit); GET /api/v1/jobs/{id} and the event streams read it.
	Jobs *Jobs
	// Secret is the bearer token; "" lets every caller in, unprivileged:
	// credentials in upstream options are REDACTED for them (see auth).
	Secret string
	// CORSOrigins are the origins whose pages may call the API; "*" any.
	CORSOrigins []string
	// FetchURL fetches an import's {"url": …} (the source package's
	// guarded fetcher in the daemon); nil refuses URL imports.
	FetchURL func(ctx context.Context, url string) ([]byte, error)
	// Fallback serves every path outside Prefix (the Clash controller);
	// nil answers 404. It gets the same auth, CORS and caller.
	Fallback http.Handler
	// Version is what GET /api/v1/version says ("proxypool x").
	Version string
	Log     logrus.FieldLogger
}

// Body caps: an import carries a whole list, everything else a little JSON.
const (
	maxImportBytes = 16 << 20
	maxJSONBytes   = 1 << 20
	// writeTimeout bounds a plain answer; streams lift it.
	writeTimeout = 2 * time.Minute
)

// Server is the HTTP API. It is an http.Handler; Serve runs it on a
// listener with timeouts and header caps.
type Server struct {
	o       Options
	mux     *http.ServeMux
	secret  [sha256.Size]byte
	routes  []string // "METHOD /path" of every /api/v1 route, for the OpenAPI test
	handler http.Handler
}

// New returns the server for o.
func New(o Options) (*Server, error) {
	if o.Manager == nil || o.Jobs == nil {
		return nil, errors.New("api: Options.Manager and Options.Jobs are required")
	}
	if o.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		o.Log = l
	}
	s := &Server{o: o, mux: http.NewServeMux(), secret: sha256.Sum256([]byte(o.Secret))}
	s.register()
	s.handler = http.HandlerFunc(s.serve)
	return s, nil
}

// Routes lists "METHOD /api/v1/path" for every route of our own API.
func (s *Server) Routes() []string { return slices.Clone(s.routes) }

func (s *Server) handle(pattern string, h http.HandlerFunc) {
	method, path, _ := strings.Cut(pattern, " ")
	s.routes = append(s.routes, method+" "+Prefix+path)
	s.mux.HandleFunc(method+" "+Prefix+path, h)
}

// ServeHTTP applies CORS, the host check and auth to every path, then
// routes: Prefix to our handlers, the rest to the fallback.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if !s.cors(w, r) {
		return
	}
	if s.o.Secret == "" && !loopbackHost(r.Host) {
		// Without a secret the API trusts whoever reaches loopback; a
		// browser page that rebinds its own name to 127.0.0.1 must not be
		// one of them.
		writeError(w, http.StatusMisdirectedRequest, fmt.Sprintf("host %q: without api.secret the API answers only to a loopback host name", r.Host))
		return
	}
	caller, ok := s.auth(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="proxypool"`)
		writeError(w, http.StatusUnauthorized, "Unauthorized")
		return
	}
	r = r.WithContext(control.WithCaller(r.Context(), caller))
	if r.URL.Path == Prefix || strings.HasPrefix(r.URL.Path, Prefix+"/") {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(writeTimeout))
		s.mux.ServeHTTP(w, r)
		return
	}
	if s.o.Fallback == nil {
		writeError(w, http.StatusNotFound, "no such path: "+r.URL.Path)
		return
	}
	s.o.Fallback.ServeHTTP(w, r)
}

// auth learns who calls. With a secret, only a caller presenting it gets
// in, as a privileged caller (the secret is the API's root); the token may
// come as ?token= only on a WebSocket upgrade, where browsers cannot set
// headers. Without a secret everyone on loopback gets in unprivileged: the
// pool may be steered (as proxypoolctl does in `run` mode) but
// credentials are REDACTED, since any local user could be calling.
func (s *Server) auth(r *http.Request) (control.Caller, bool) {
	// UID is not known over HTTP.
	c := control.Caller{UID: math.MaxUint32}
	if s.o.Secret == "" {
		return c, true
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok && websocket(r) {
		token, ok = r.URL.Query().Get("token"), r.URL.Query().Has("token")
	}
	if !ok {
		return c, false
	}
	// Hashing first makes the comparison's time independent of the
	// secret's length as well as its bytes.
	sum := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(sum[:], s.secret[:]) != 1 {
		return c, false
	}
	c.Privileged = true
	return c, true
}

func websocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// cors answers preflights and marks allowed origins; it returns false when
// it answered. A request from a page whose origin is not allowed is
// refused outright: a "simple" cross-site POST needs no preflight, and
// without a secret it would otherwise reach the pool.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	allow := ""
	switch {
	case slices.Contains(s.o.CORSOrigins, origin):
		allow = origin
	case slices.Contains(s.o.CORSOrigins, "*"):
		allow = "*"
	case sameOrigin(origin, r.Host):
		return true // the page came from this server: no CORS needed
	}
	if allow == "" {
		writeError(w, http.StatusForbidden, fmt.Sprintf("origin %s is not in api.cors-origins", origin))
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", allow)
	h.Add("Vary", "Origin")
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		return true
	}
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
	h.Set("Access-Control-Max-Age", "600")
	if strings.EqualFold(r.Header.Get("Access-Control-Request-Private-Network"), "true") {
		// Chrome's Private Network Access: a public page asking for loopback.
		h.Set("Access-Control-Allow-Private-Network", "true")
	}
	w.WriteHeader(http.StatusNoContent)
	return false
}

func sameOrigin(origin, host string) bool {
	o, ok := strings.CutPrefix(origin, "http://")
	if !ok {
		o, _ = strings.CutPrefix(origin, "https://")
	}
	return o == host
}

// loopbackHost reports whether a Host header names loopback by address or
// as localhost.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// Serve serves the API on ln until ctx ends, then shuts down (open
// streams are cut after five seconds).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		// No ReadTimeout/WriteTimeout: streams (SSE, the Clash WebSockets)
		// live long; plain answers get writeTimeout per request.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		BaseContext:    func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving the API on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	<-errc
	return nil
}
