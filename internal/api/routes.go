package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/upstream"
)

// register adds every /api/v1 route; docs/api/openapi.yaml documents each
// (TestOpenAPI holds the two together).
func (s *Server) register() {
	s.handle("GET /version", s.version)
	s.handle("GET /status", s.status)
	s.handle("GET /counts", s.counts)
	s.handle("GET /upstreams", s.list)
	s.handle("POST /upstreams", s.add)
	s.handle("GET /upstreams/{id}", s.get)
	s.handle("DELETE /upstreams/{id}", s.remove)
	s.handle("POST /restore", s.restore)
	s.handle("POST /import", s.importList)
	s.handle("POST /check", s.check)
	s.handle("POST /refresh", s.refresh)
	s.handle("GET /jobs/{id}", s.job)
	s.handle("GET /jobs/{id}/events", s.jobEvents)
	s.handle("GET /events", s.allEvents)
	s.handle("GET /export", s.export)
	s.handle("GET /groups", s.groups)
	s.handle("GET /sources", s.sources)
	s.handle("GET /tor", s.torStatus)
	s.handle("POST /tor/newnym", s.torNewnym)
	s.handle("POST /tor/generate", s.torGenerate)
	s.mux.HandleFunc(Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such path: "+r.URL.Path)
	})
}

// errorBody is every error's shape, the one Clash dashboards read too.
type errorBody struct {
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Message: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// fail answers a manager error with the status its sentinel means.
func fail(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, control.ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, control.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, control.ErrAccessDenied):
		code = http.StatusForbidden
	case errors.Is(err, control.ErrNotRunning):
		code = http.StatusServiceUnavailable
	}
	writeError(w, code, err.Error())
}

// answer is a manager call's answer: v as JSON, or err with its status.
func answer[T any](w http.ResponseWriter, v T, err error) {
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// readJSON decodes a small JSON body into v; an empty body leaves v as is.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "reading the JSON body: "+err.Error())
		return false
	}
	return true
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": s.o.Version})
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.o.Manager.Status(r.Context())
	answer(w, st, err)
}

func (s *Server) counts(w http.ResponseWriter, r *http.Request) {
	c, err := s.o.Manager.Counts(r.Context())
	answer(w, c, err)
}

// listQuery reads proxypoolctl list's filters from the query string; an
// error names the parameter.
func listQuery(v url.Values) (control.ListQuery, error) {
	q := control.ListQuery{State: upstream.State(v.Get("state")), Country: v.Get("country"), Group: v.Get("group"),
		Source: v.Get("source"), Anonymity: upstream.Anonymity(v.Get("anonymity")), Target: v.Get("target")}
	for name := range v {
		switch name {
		case "state", "country", "group", "source", "anonymity", "min-score", "asn", "class", "target", "min-throughput", "offset", "limit":
		default:
			return q, fmt.Errorf("%s: unknown parameter (want state, country, group, source, anonymity, min-score, asn, class, target, min-throughput, offset, limit)", name)
		}
	}
	switch q.State {
	case "", upstream.Healthy, upstream.Failing, upstream.Dead, upstream.Unknown:
	default:
		return q, fmt.Errorf("state: %q is not healthy, failing, dead or unknown", q.State)
	}
	if s := v.Get("min-score"); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 {
			return q, fmt.Errorf("min-score: %q is not a number >= 0", s)
		}
		q.MinScore = f
	}
	if s := v.Get("asn"); s != "" {
		n, err := upstream.ParseASN(s)
		if err != nil {
			return q, fmt.Errorf("asn: %w", err)
		}
		q.ASN = n
	}
	if s := v.Get("class"); s != "" {
		c, err := upstream.ParseClass(s)
		if err != nil {
			return q, fmt.Errorf("class: %w", err)
		}
		q.Class = c
	}
	if s := v.Get("min-throughput"); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 {
			return q, fmt.Errorf("min-throughput: %q is not a number >= 0", s)
		}
		q.MinThroughput = f
	}
	for _, p := range []struct {
		name string
		dst  *int
	}{{"offset", &q.Offset}, {"limit", &q.Limit}} {
		if s := v.Get(p.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				return q, fmt.Errorf("%s: %q is not a whole number >= 0", p.name, s)
			}
			*p.dst = n
		}
	}
	return q, nil
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q, err := listQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	page, err := s.o.Manager.List(r.Context(), q)
	answer(w, page, err)
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	rec, err := s.o.Manager.Get(r.Context(), r.PathValue("id"))
	answer(w, rec, err)
}

// AddRequest is POST /api/v1/upstreams.
type AddRequest struct {
	URI string `json:"uri"`
}

// AddReply is its answer: 201 when created, 200 when already there.
type AddReply struct {
	ID      string `json:"id"`
	Created bool   `json:"created"`
}

func (s *Server) add(w http.ResponseWriter, r *http.Request) {
	var req AddRequest
	if !readJSON(w, r, &req) {
		return
	}
	if strings.TrimSpace(req.URI) == "" {
		writeError(w, http.StatusBadRequest, "uri: missing (a share link or proxy URI)")
		return
	}
	id, created, err := s.o.Manager.Add(r.Context(), req.URI)
	if err != nil {
		fail(w, err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeJSON(w, code, AddReply{ID: id, Created: created})
}

// RemoveReply is DELETE /api/v1/upstreams/{id}; id may be an upstream's
// URI, path-escaped.
type RemoveReply struct {
	Removed int `json:"removed"`
}

func (s *Server) remove(w http.ResponseWriter, r *http.Request) {
	n, err := s.o.Manager.Remove(r.Context(), r.PathValue("id"))
	answer(w, RemoveReply{Removed: n}, err)
}

// RestoreRequest is POST /api/v1/restore: removed or retired upstreams,
// by ID or URI, brought back (proxypoolctl restore).
type RestoreRequest struct {
	IDs []string `json:"ids"`
}

// RestoreReply says how many came back.
type RestoreReply struct {
	Restored int `json:"restored"`
}

func (s *Server) restore(w http.ResponseWriter, r *http.Request) {
	var req RestoreRequest
	if !readJSON(w, r, &req) {
		return
	}
	if len(req.IDs) == 0 {
		writeError(w, http.StatusBadRequest, "ids: name at least one upstream ID or URI to restore")
		return
	}
	n, err := s.o.Manager.Restore(r.Context(), req.IDs)
	answer(w, RestoreReply{Restored: n}, err)
}

// ImportRequest is POST /api/v1/import as JSON: the list itself (text) or
// where the daemon fetches it (url). Any other content type is the list.
type ImportRequest struct {
	Text string `json:"text,omitempty"`
	URL  string `json:"url,omitempty"`
}

func (s *Server) importList(w http.ResponseWriter, r *http.Request) {
	var text string
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/json" {
		var req ImportRequest
		if !readJSON(w, r, &req) {
			return
		}
		switch {
		case req.URL != "" && req.Text != "":
			writeError(w, http.StatusBadRequest, "url, text: give one, not both")
			return
		case req.URL != "":
			// Not file://: a caller of the API must not read the daemon's files.
			if u, err := url.Parse(req.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("url: %q is not an http(s) URL", req.URL))
				return
			}
			if s.o.FetchURL == nil {
				writeError(w, http.StatusNotImplemented, "url: this daemon does not fetch lists")
				return
			}
			data, err := s.o.FetchURL(r.Context(), req.URL)
			if err != nil {
				writeError(w, http.StatusBadGateway, "url: "+err.Error())
				return
			}
			text = string(data)
		default:
			text = req.Text
		}
	} else {
		data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxImportBytes))
		if err != nil {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("reading the list: %v (at most %d bytes)", err, maxImportBytes))
			return
		}
		text = string(data)
	}
	rep, err := s.o.Manager.Import(r.Context(), text)
	answer(w, rep, err)
}

// CheckRequest is POST /api/v1/check: ids to probe, every upstream when
// empty.
type CheckRequest struct {
	IDs []string `json:"ids,omitempty"`
}

// JobReply is the answer of every call that starts a job (202).
type JobReply struct {
	Job string `json:"job"`
}

func (s *Server) check(w http.ResponseWriter, r *http.Request) {
	var req CheckRequest
	if !readJSON(w, r, &req) {
		return
	}
	job, err := s.o.Manager.Check(r.Context(), req.IDs)
	s.started(w, job, err)
}

func (s *Server) refresh(w http.ResponseWriter, r *http.Request) {
	job, err := s.o.Manager.Refresh(r.Context())
	s.started(w, job, err)
}

func (s *Server) torGenerate(w http.ResponseWriter, r *http.Request) {
	job, err := s.o.Manager.TorGenerate(r.Context())
	s.started(w, job, err)
}

func (s *Server) started(w http.ResponseWriter, job string, err error) {
	if err != nil {
		fail(w, err)
		return
	}
	w.Header().Set("Location", Prefix+"/jobs/"+url.PathEscape(job))
	writeJSON(w, http.StatusAccepted, JobReply{Job: job})
}

func (s *Server) job(w http.ResponseWriter, r *http.Request) {
	jb, ok := s.o.Jobs.Get(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no job %q (it has reported no progress yet, or is long gone)", r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, jb)
}

func (s *Server) jobEvents(w http.ResponseWriter, r *http.Request) { s.stream(w, r, r.PathValue("id")) }

func (s *Server) allEvents(w http.ResponseWriter, r *http.Request) { s.stream(w, r, "") }

// stream sends job progress as server-sent events ("event: progress",
// data a Job) until the job ends (one job) or the client leaves (all
// jobs). A comment every 15 s keeps proxies from closing an idle stream.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, id string) {
	rc := http.NewResponseController(w)
	ch, last, cancel := s.o.Jobs.Subscribe(id)
	defer cancel()
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	send := func(jb Job) bool {
		b, _ := json.Marshal(jb)
		if _, err := fmt.Fprintf(w, "event: progress\ndata: %s\n\n", b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if last != nil && (!send(*last) || last.Ended) {
		return
	}
	if err := rc.Flush(); err != nil { // the client knows it is subscribed once headers arrive
		return
	}
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keep.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case jb := <-ch:
			if !send(jb) || (id != "" && jb.Ended) {
				return
			}
		}
	}
}

// exportTypes are the content types of the export formats.
var exportTypes = map[string]string{
	control.FormatJSON:  "application/json",
	control.FormatTXT:   "text/plain; charset=utf-8",
	control.FormatClash: "application/yaml",
}

func (s *Server) export(w http.ResponseWriter, r *http.Request) {
	format := r.URL.Query().Get("format")
	if format == "" {
		format = control.FormatJSON
	}
	ct, ok := exportTypes[format]
	if !ok {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("format: %q is not json, txt or clash", format))
		return
	}
	b, err := s.o.Manager.Export(r.Context(), format)
	if err != nil {
		fail(w, err)
		return
	}
	w.Header().Set("Content-Type", ct)
	_, _ = w.Write(b)
}

// Group is one entry of GET /api/v1/groups: a pool group's members as
// the pool counts them and its SLO floor when it has one.
type Group struct {
	Name      string              `json:"name"`
	Upstreams int                 `json:"upstreams"`
	Floor     *control.GroupFloor `json:"floor,omitempty"`
}

func (s *Server) groups(w http.ResponseWriter, r *http.Request) {
	byName(s, w, r, func(st control.Status, get func(string) *Group) {
		for name, n := range st.Groups {
			get(name).Upstreams = n
		}
		for i, f := range st.Floors {
			if f.Group != "" { // the pool's own floor is in /status
				get(f.Group).Floor = &st.Floors[i]
			}
		}
	}, func(name string) *Group { return &Group{Name: name} })
}

// byName answers a list derived from Status: fill sets each entry (get
// makes it on first use with mk), the answer is sorted by name.
func byName[T any](s *Server, w http.ResponseWriter, r *http.Request, fill func(control.Status, func(string) *T), mk func(string) *T) {
	st, err := s.o.Manager.Status(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	m := map[string]*T{}
	fill(st, func(name string) *T {
		if m[name] == nil {
			m[name] = mk(name)
		}
		return m[name]
	})
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	out := make([]T, 0, len(m))
	for _, name := range names {
		out = append(out, *m[name])
	}
	writeJSON(w, http.StatusOK, out)
}

// Source is one entry of GET /api/v1/sources: its upstreams now, its last
// fetch and its reputation.
type Source struct {
	control.SourceStatus
	Upstreams  int                       `json:"upstreams"`
	Reputation *control.SourceReputation `json:"reputation,omitempty"`
}

func (s *Server) sources(w http.ResponseWriter, r *http.Request) {
	byName(s, w, r, func(st control.Status, get func(string) *Source) {
		for _, ss := range st.SourceState {
			get(ss.Name).SourceStatus = ss
		}
		for name, n := range st.Sources {
			get(name).Upstreams = n
		}
		for i, rep := range st.Reputation {
			get(rep.Source).Reputation = &st.Reputation[i]
		}
	}, func(name string) *Source { return &Source{SourceStatus: control.SourceStatus{Name: name}} })
}

func (s *Server) torStatus(w http.ResponseWriter, r *http.Request) {
	in, err := s.o.Manager.TorStatus(r.Context())
	if in == nil {
		in = []control.TorInstance{}
	}
	answer(w, in, err)
}

// NewnymRequest is POST /api/v1/tor/newnym: the instance's SOCKS port,
// every instance when 0 or absent.
type NewnymRequest struct {
	Port int `json:"port,omitempty"`
}

func (s *Server) torNewnym(w http.ResponseWriter, r *http.Request) {
	var req NewnymRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Port < 0 || req.Port > 65535 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("port: %d is not 0-65535", req.Port))
		return
	}
	if err := s.o.Manager.TorNewnym(r.Context(), req.Port); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
