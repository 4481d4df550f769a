package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/user"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/godbus/dbus/v5/prop"
	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/upstream"
)

// D-Bus error names the server replies with.
const (
	ErrorAccessDenied = "org.freedesktop.DBus.Error.AccessDenied"
	ErrorInvalidArgs  = "org.freedesktop.DBus.Error.InvalidArgs"
	ErrorFailed       = "org.freedesktop.DBus.Error.Failed"
	ErrorNotFound     = "org.proxypool.ProxyPool1.Error.NotFound"
)

// DefaultGroup is the group whose members may call mutating methods.
const DefaultGroup = "proxypool"

// Options tune Serve. The zero value is what the daemon uses.
type Options struct {
	// AllowedGIDs are the groups whose members may call mutating methods,
	// besides root and the daemon's own uid. Nil means the gid of group
	// DefaultGroup, when that group exists.
	AllowedGIDs []uint32
	// CallTimeout bounds each call's context. 0 means one minute.
	CallTimeout time.Duration
	// Log receives one line per refused call and per failed handler.
	// Nil discards.
	Log logrus.FieldLogger
}

// Server is the exported Manager on one connection.
type Server struct {
	conn    *dbus.Conn
	m       Manager
	props   *prop.Properties
	allowed []uint32
	timeout time.Duration
	log     logrus.FieldLogger
	ctx     context.Context
	cancel  context.CancelFunc

	mu     sync.Mutex
	closed bool
}

// Serve exports m with its introspection and properties at Path on conn,
// then requests BusName without queueing. Exporting first means no call
// can arrive before its handler exists. It fails when another connection
// owns the name. The server stops (releases the name, unexports) when ctx
// is done or Close is called.
func Serve(ctx context.Context, conn *dbus.Conn, m Manager, opts Options) (*Server, error) {
	s := &Server{conn: conn, m: m, allowed: opts.AllowedGIDs, timeout: opts.CallTimeout, log: opts.Log}
	if s.timeout <= 0 {
		s.timeout = time.Minute
	}
	if s.log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		s.log = l
	}
	if s.allowed == nil {
		if g, err := user.LookupGroup(DefaultGroup); err == nil {
			if gid, err := strconv.ParseUint(g.Gid, 10, 32); err == nil {
				s.allowed = []uint32{uint32(gid)}
			}
		}
	}
	s.ctx, s.cancel = context.WithCancel(ctx)

	if err := conn.Export(handler{s}, Path, Interface); err != nil {
		return nil, fmt.Errorf("exporting %s: %w", Interface, err)
	}
	props, err := prop.Export(conn, Path, prop.Map{Interface: {
		PropVersion: {Value: uint64(0), Emit: prop.EmitTrue},
		PropTotal:   {Value: uint32(0), Emit: prop.EmitTrue},
		PropHealthy: {Value: uint32(0), Emit: prop.EmitTrue},
		PropFailing: {Value: uint32(0), Emit: prop.EmitTrue},
		PropDead:    {Value: uint32(0), Emit: prop.EmitTrue},
		PropUnknown: {Value: uint32(0), Emit: prop.EmitTrue},
	}})
	if err != nil {
		s.unexport()
		return nil, fmt.Errorf("exporting properties of %s: %w", Interface, err)
	}
	s.props = props
	if err := conn.Export(introspect.NewIntrospectable(node()), Path, "org.freedesktop.DBus.Introspectable"); err != nil {
		s.unexport()
		return nil, fmt.Errorf("exporting introspection of %s: %w", Path, err)
	}
	reply, err := conn.RequestName(BusName, dbus.NameFlagDoNotQueue)
	if err != nil {
		s.unexport()
		return nil, fmt.Errorf("requesting bus name %s: %w", BusName, err)
	}
	if reply != dbus.RequestNameReplyPrimaryOwner {
		s.unexport()
		return nil, fmt.Errorf("requesting bus name %s: already owned by another process (is proxy-probe running?)", BusName)
	}
	go func() {
		<-s.ctx.Done()
		s.Close()
	}()
	return s, nil
}

func (s *Server) unexport() {
	s.conn.Export(nil, Path, Interface)
	s.conn.Export(nil, Path, "org.freedesktop.DBus.Properties")
	s.conn.Export(nil, Path, "org.freedesktop.DBus.Introspectable")
}

// Close releases BusName and unexports the object. The connection stays
// open; it is the caller's.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.cancel()
	_, err := s.conn.ReleaseName(BusName)
	s.unexport()
	if err != nil {
		return fmt.Errorf("releasing bus name %s: %w", BusName, err)
	}
	return nil
}

// SetCounts publishes the pool counts as properties; each changed value
// emits PropertiesChanged.
func (s *Server) SetCounts(c Counts) {
	set := func(name string, v any) {
		if s.props.GetMust(Interface, name) != v {
			s.props.SetMust(Interface, name, v)
		}
	}
	set(PropVersion, c.Version)
	set(PropTotal, c.Total)
	set(PropHealthy, c.Healthy)
	set(PropFailing, c.Failing)
	set(PropDead, c.Dead)
	set(PropUnknown, c.Unknown)
}

// PoolChanged emits the signal that tells gateways to reload their pool
// snapshot.
func (s *Server) PoolChanged(version uint64) error {
	if err := s.conn.Emit(Path, Interface+".PoolChanged", version); err != nil {
		return fmt.Errorf("emitting PoolChanged: %w", err)
	}
	return nil
}

// Progress emits one Progress signal for a job.
func (s *Server) Progress(p Progress) error {
	if err := s.conn.Emit(Path, Interface+".Progress", p.Job, p.Done, p.Total); err != nil {
		return fmt.Errorf("emitting Progress: %w", err)
	}
	return nil
}

// caller learns who sent a call: root, the daemon's own uid and members
// of the allowed groups are privileged. The bus policy already refuses
// mutating calls from others on the system bus; authorize is the second
// line, and the only one on a session bus.
func (s *Server) caller(ctx context.Context, sender dbus.Sender) (Caller, error) {
	uid, gids, err := s.credentials(ctx, string(sender))
	if err != nil {
		return Caller{}, err
	}
	c := Caller{UID: uid, Privileged: uid == 0 || uid == uint32(os.Getuid())}
	for _, g := range gids {
		c.Privileged = c.Privileged || slices.Contains(s.allowed, g)
	}
	return c, nil
}

// authorize refuses a mutating call from an unprivileged caller.
func (s *Server) authorize(c Caller, err error, sender dbus.Sender, method string) *dbus.Error {
	if err != nil {
		s.log.WithError(err).WithField("method", method).Warn("refusing call: cannot read caller credentials")
		return dbus.NewError(ErrorAccessDenied, []any{fmt.Sprintf("%s: permission denied: cannot read caller credentials", method)})
	}
	if c.Privileged {
		return nil
	}
	s.log.WithFields(logrus.Fields{"method": method, "uid": c.UID, "sender": string(sender)}).Info("refused mutating call")
	return dbus.NewError(ErrorAccessDenied, []any{fmt.Sprintf(
		"%s: permission denied for uid %d: needs root or membership in group %s", method, c.UID, DefaultGroup)})
}

// credentials asks the bus who sent a message: the uid, and the groups
// (from the bus when it knows them, else from the user database).
func (s *Server) credentials(ctx context.Context, sender string) (uint32, []uint32, error) {
	var creds map[string]dbus.Variant
	err := s.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionCredentials", 0, sender).Store(&creds)
	if err != nil {
		var uid uint32
		if err2 := s.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixUser", 0, sender).Store(&uid); err2 != nil {
			return 0, nil, fmt.Errorf("asking the bus for the uid of %s: %w", sender, err2)
		}
		return uid, userGroups(uid), nil
	}
	v, ok := creds["UnixUserID"]
	if !ok {
		return 0, nil, fmt.Errorf("bus did not report the uid of %s", sender)
	}
	uid, ok := v.Value().(uint32)
	if !ok {
		return 0, nil, fmt.Errorf("bus reported uid of %s as %s", sender, v.Signature())
	}
	if g, ok := creds["UnixGroupIDs"]; ok {
		if gids, ok := g.Value().([]uint32); ok {
			return uid, gids, nil
		}
	}
	return uid, userGroups(uid), nil
}

func userGroups(uid uint32) []uint32 {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return nil
	}
	ids, _ := u.GroupIds()
	var out []uint32
	for _, id := range append(ids, u.Gid) {
		if n, err := strconv.ParseUint(id, 10, 32); err == nil {
			out = append(out, uint32(n))
		}
	}
	return out
}

// callError turns a Manager error into the D-Bus error the client maps back.
func (s *Server) callError(method string, err error) *dbus.Error {
	var de *dbus.Error
	switch {
	case errors.As(err, &de):
		return de
	case errors.Is(err, ErrNotFound):
		return dbus.NewError(ErrorNotFound, []any{err.Error()})
	case errors.Is(err, ErrInvalid):
		return dbus.NewError(ErrorInvalidArgs, []any{err.Error()})
	case errors.Is(err, ErrAccessDenied):
		return dbus.NewError(ErrorAccessDenied, []any{err.Error()})
	}
	s.log.WithError(err).WithField("method", method).Warn("call failed")
	return dbus.NewError(ErrorFailed, []any{err.Error()})
}

func jsonReply(v any) (string, *dbus.Error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", dbus.MakeFailedError(fmt.Errorf("encoding reply: %w", err))
	}
	return string(b), nil
}

// handler carries the methods godbus exports. Every exported method here is
// a D-Bus method of Interface; keep them in step with managerInterface.
type handler struct{ s *Server }

// call starts a call: its context carries the Caller, so that the Manager
// gives credentials only to the privileged. A read-only call whose
// caller's credentials cannot be read goes on as unprivileged; a mutating
// one is refused.
func (h handler) call(sender dbus.Sender, method string, mutating bool) (context.Context, context.CancelFunc, *dbus.Error) {
	ctx, cancel := context.WithTimeout(h.s.ctx, h.s.timeout)
	c, err := h.s.caller(ctx, sender)
	if mutating {
		if derr := h.s.authorize(c, err, sender, method); derr != nil {
			cancel()
			return nil, nil, derr
		}
	} else if err != nil {
		h.s.log.WithError(err).WithField("method", method).Debug("serving as unprivileged: cannot read caller credentials")
		c = Caller{}
	}
	return WithCaller(ctx, c), cancel, nil
}

func (h handler) List(sender dbus.Sender, filter map[string]string, offset, limit uint32) (string, uint32, *dbus.Error) {
	ctx, cancel, derr := h.call(sender, "List", false)
	if derr != nil {
		return "", 0, derr
	}
	defer cancel()
	q := ListQuery{Offset: int(offset), Limit: int(limit)}
	for k, v := range filter {
		switch k {
		case "state":
			q.State = upstream.State(v)
		case "country":
			q.Country = v
		case "group":
			q.Group = v
		case "source":
			q.Source = v
		case "anonymity":
			q.Anonymity = upstream.Anonymity(v)
		case "min-score":
			n, err := strconv.ParseFloat(v, 64)
			if err != nil || n < 0 || math.IsNaN(n) {
				return "", 0, dbus.NewError(ErrorInvalidArgs, []any{fmt.Sprintf("List: min-score %q is not a number >= 0", v)})
			}
			q.MinScore = n
		case "asn":
			n, err := upstream.ParseASN(v)
			if err != nil {
				return "", 0, dbus.NewError(ErrorInvalidArgs, []any{"List: " + err.Error()})
			}
			q.ASN = n
		case "class":
			c, err := upstream.ParseClass(v)
			if err != nil {
				return "", 0, dbus.NewError(ErrorInvalidArgs, []any{"List: " + err.Error()})
			}
			q.Class = c
		case "target":
			q.Target = v
		case "min-throughput":
			n, err := strconv.ParseFloat(v, 64)
			if err != nil || n < 0 || math.IsNaN(n) {
				return "", 0, dbus.NewError(ErrorInvalidArgs, []any{fmt.Sprintf("List: min-throughput %q is not a number >= 0", v)})
			}
			q.MinThroughput = n
		default:
			return "", 0, dbus.NewError(ErrorInvalidArgs, []any{fmt.Sprintf("List: unknown filter key %q (want state, country, group, source, anonymity, min-score, asn, class, target or min-throughput)", k)})
		}
	}
	switch q.Anonymity {
	case "", upstream.AnonElite, upstream.AnonAnonymous, upstream.AnonTransparent:
	default:
		return "", 0, dbus.NewError(ErrorInvalidArgs, []any{fmt.Sprintf("List: unknown anonymity %q (want elite, anonymous or transparent)", q.Anonymity)})
	}
	switch q.State {
	case "", upstream.Unknown, upstream.Healthy, upstream.Failing, upstream.Dead, upstream.Removed, upstream.Retired:
	default:
		return "", 0, dbus.NewError(ErrorInvalidArgs, []any{fmt.Sprintf("List: unknown state %q (want healthy, failing, dead, unknown, removed or retired)", q.State)})
	}
	if q.Limit <= 0 {
		q.Limit = DefaultListLimit
	}
	q.Limit = min(q.Limit, MaxListLimit)
	page, err := h.s.m.List(ctx, q)
	if err != nil {
		return "", 0, h.s.callError("List", err)
	}
	if page.Records == nil {
		page.Records = []upstream.Record{}
	}
	if len(page.Records) > q.Limit {
		page.Records = page.Records[:q.Limit]
	}
	js, derr := jsonReply(page.Records)
	return js, uint32(page.Total), derr
}

func (h handler) Status(sender dbus.Sender) (string, *dbus.Error) {
	ctx, cancel, derr := h.call(sender, "Status", false)
	if derr != nil {
		return "", derr
	}
	defer cancel()
	st, err := h.s.m.Status(ctx)
	if err != nil {
		return "", h.s.callError("Status", err)
	}
	return jsonReply(st)
}

func (h handler) Add(sender dbus.Sender, uri string) (string, bool, *dbus.Error) {
	ctx, cancel, derr := h.call(sender, "Add", true)
	if derr != nil {
		return "", false, derr
	}
	defer cancel()
	id, created, err := h.s.m.Add(ctx, uri)
	if err != nil {
		return "", false, h.s.callError("Add", err)
	}
	return id, created, nil
}

func (h handler) Remove(sender dbus.Sender, idOrURI string) (uint32, *dbus.Error) {
	return h.count(sender, "Remove", func(ctx context.Context) (int, error) { return h.s.m.Remove(ctx, idOrURI) })
}

func (h handler) Restore(sender dbus.Sender, idsOrURIs []string) (uint32, *dbus.Error) {
	return h.count(sender, "Restore", func(ctx context.Context) (int, error) { return h.s.m.Restore(ctx, idsOrURIs) })
}

// count runs a mutating method that answers how many upstreams it changed.
func (h handler) count(sender dbus.Sender, method string, fn func(ctx context.Context) (int, error)) (uint32, *dbus.Error) {
	ctx, cancel, derr := h.call(sender, method, true)
	if derr != nil {
		return 0, derr
	}
	defer cancel()
	n, err := fn(ctx)
	if err != nil {
		return 0, h.s.callError(method, err)
	}
	return uint32(n), nil
}

func (h handler) Import(sender dbus.Sender, text string) (string, *dbus.Error) {
	ctx, cancel, derr := h.call(sender, "Import", true)
	if derr != nil {
		return "", derr
	}
	defer cancel()
	rep, err := h.s.m.Import(ctx, text)
	if err != nil {
		return "", h.s.callError("Import", err)
	}
	if rep.Lines == nil {
		rep.Lines = []ImportLine{}
	}
	return jsonReply(rep)
}

func (h handler) Check(sender dbus.Sender, ids []string) (string, *dbus.Error) {
	ctx, cancel, derr := h.call(sender, "Check", true)
	if derr != nil {
		return "", derr
	}
	defer cancel()
	job, err := h.s.m.Check(ctx, ids)
	if err != nil {
		return "", h.s.callError("Check", err)
	}
	return job, nil
}

func (h handler) Refresh(sender dbus.Sender) (string, *dbus.Error) {
	ctx, cancel, derr := h.call(sender, "Refresh", true)
	if derr != nil {
		return "", derr
	}
	defer cancel()
	job, err := h.s.m.Refresh(ctx)
	if err != nil {
		return "", h.s.callError("Refresh", err)
	}
	return job, nil
}

func (h handler) Export(sender dbus.Sender, format string) (string, *dbus.Error) {
	ctx, cancel, derr := h.call(sender, "Export", false)
	if derr != nil {
		return "", derr
	}
	defer cancel()
	switch format {
	case FormatJSON, FormatTXT, FormatClash:
	default:
		return "", dbus.NewError(ErrorInvalidArgs, []any{fmt.Sprintf("Export: unknown format %q (want json, txt or clash)", format)})
	}
	b, err := h.s.m.Export(ctx, format)
	if err != nil {
		return "", h.s.callError("Export", err)
	}
	return string(b), nil
}

func (h handler) TorStatus(sender dbus.Sender) (string, *dbus.Error) {
	ctx, cancel, derr := h.call(sender, "TorStatus", false)
	if derr != nil {
		return "", derr
	}
	defer cancel()
	in, err := h.s.m.TorStatus(ctx)
	if err != nil {
		return "", h.s.callError("TorStatus", err)
	}
	if in == nil {
		in = []TorInstance{}
	}
	return jsonReply(in)
}

func (h handler) TorNewnym(sender dbus.Sender, port uint32) *dbus.Error {
	ctx, cancel, derr := h.call(sender, "TorNewnym", true)
	if derr != nil {
		return derr
	}
	defer cancel()
	if port > 65535 {
		return dbus.NewError(ErrorInvalidArgs, []any{fmt.Sprintf("TorNewnym: port %d out of range", port)})
	}
	if err := h.s.m.TorNewnym(ctx, int(port)); err != nil {
		return h.s.callError("TorNewnym", err)
	}
	return nil
}

func (h handler) TorGenerate(sender dbus.Sender) (string, *dbus.Error) {
	ctx, cancel, derr := h.call(sender, "TorGenerate", true)
	if derr != nil {
		return "", derr
	}
	defer cancel()
	job, err := h.s.m.TorGenerate(ctx)
	if err != nil {
		return "", h.s.callError("TorGenerate", err)
	}
	return job, nil
}
