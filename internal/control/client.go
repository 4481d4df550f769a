package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/godbus/dbus/v5"
)

// Client calls a running Manager over D-Bus. Its methods mirror Manager.
type Client struct {
	conn   *dbus.Conn
	obj    dbus.BusObject
	system bool
	own    bool
}

// Dial connects to the system bus (system) or the session bus (--user) on
// a private connection. DBUS_SYSTEM_BUS_ADDRESS and
// DBUS_SESSION_BUS_ADDRESS are honoured. It does not check that proxypool
// is running: the first call says so.
func Dial(ctx context.Context, system bool) (*Client, error) {
	connect, bus := dbus.ConnectSessionBus, "session"
	if system {
		connect, bus = dbus.ConnectSystemBus, "system"
	}
	conn, err := connect(dbus.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("connecting to the %s bus: %w (is dbus running?)", bus, err)
	}
	c := NewClient(conn, system)
	c.own = true
	return c, nil
}

// NewClient wraps an open connection; system only changes the wording of
// errors. Close does not close conn.
func NewClient(conn *dbus.Conn, system bool) *Client {
	return &Client{conn: conn, obj: conn.Object(BusName, Path), system: system}
}

// Close closes the connection if Dial opened it.
func (c *Client) Close() error {
	if c.own {
		return c.conn.Close()
	}
	return nil
}

// Error is a failed call, matching one of the sentinel errors with
// errors.Is when the cause is known.
type Error struct {
	Method string
	Name   string // D-Bus error name
	Msg    string // what the user reads
	Detail string // the bus's or daemon's own text
	kind   error
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the matching sentinel (ErrNotRunning, ErrAccessDenied,
// ErrNotFound, ErrInvalid) or nil.
func (e *Error) Unwrap() error { return e.kind }

func (c *Client) wrap(method string, err error) error {
	if err == nil {
		return nil
	}
	var de dbus.Error
	var pde *dbus.Error
	switch {
	case errors.As(err, &pde):
		de = *pde
	case errors.As(err, &de):
	default:
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return fmt.Errorf("%s: %w", method, err)
		}
		return fmt.Errorf("calling %s: %w", method, err)
	}
	detail := de.Error()
	e := &Error{Method: method, Name: de.Name, Detail: detail, Msg: detail}
	switch de.Name {
	case "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner":
		e.kind = ErrNotRunning
		if c.system {
			e.Msg = "proxypool is not running on the system bus (systemctl status proxy-probe)"
		} else {
			e.Msg = "proxypool is not running on the session bus (systemctl --user status proxy-probe)"
		}
	case ErrorAccessDenied:
		e.kind = ErrAccessDenied
		if !strings.Contains(detail, "permission denied") { // refused by the bus policy, not by the daemon
			e.Msg = fmt.Sprintf("%s: permission denied: needs root or membership in group %s", method, DefaultGroup)
		}
	case ErrorNotFound:
		e.kind = ErrNotFound
	case ErrorInvalidArgs:
		e.kind = ErrInvalid
	case "org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.Timeout":
		e.Msg = fmt.Sprintf("%s: proxypool did not answer in time (%s)", method, detail)
	}
	return e
}

func (c *Client) call(ctx context.Context, method string, args ...any) *dbus.Call {
	return c.obj.CallWithContext(ctx, Interface+"."+method, 0, args...)
}

func (c *Client) callJSON(ctx context.Context, method string, v any, args ...any) error {
	var js string
	if err := c.call(ctx, method, args...).Store(&js); err != nil {
		return c.wrap(method, err)
	}
	if err := json.Unmarshal([]byte(js), v); err != nil {
		return fmt.Errorf("decoding the reply of %s: %w", method, err)
	}
	return nil
}

// List returns one page of the pool.
func (c *Client) List(ctx context.Context, q ListQuery) (ListPage, error) {
	filter := map[string]string{}
	for k, v := range map[string]string{"state": string(q.State), "country": q.Country, "group": q.Group, "source": q.Source,
		"anonymity": string(q.Anonymity), "target": q.Target} {
		if v != "" {
			filter[k] = v
		}
	}
	if q.MinScore > 0 {
		filter["min-score"] = strconv.FormatFloat(q.MinScore, 'f', -1, 64)
	}
	if q.ASN > 0 {
		filter["asn"] = strconv.FormatUint(uint64(q.ASN), 10)
	}
	if q.Class != "" {
		filter["class"] = string(q.Class)
	}
	if q.MinThroughput > 0 {
		filter["min-throughput"] = strconv.FormatFloat(q.MinThroughput, 'f', -1, 64)
	}
	if q.Offset < 0 || q.Limit < 0 {
		return ListPage{}, fmt.Errorf("List: negative offset or limit: %w", ErrInvalid)
	}
	var (
		js    string
		total uint32
		page  ListPage
	)
	if err := c.call(ctx, "List", filter, uint32(q.Offset), uint32(q.Limit)).Store(&js, &total); err != nil {
		return ListPage{}, c.wrap("List", err)
	}
	if err := json.Unmarshal([]byte(js), &page.Records); err != nil {
		return ListPage{}, fmt.Errorf("decoding the reply of List: %w", err)
	}
	page.Total = int(total)
	return page, nil
}

// ListAll pages through every record m lists for q (q.Offset and q.Limit
// set the start and the page size) and hands each page to fn. m is a Client
// or, for proxypoolctl --db, a manager over the store.
func ListAll(ctx context.Context, m interface {
	List(context.Context, ListQuery) (ListPage, error)
}, q ListQuery, fn func(ListPage) error) error {
	for {
		page, err := m.List(ctx, q)
		if err != nil {
			return err
		}
		if err := fn(page); err != nil {
			return err
		}
		q.Offset += len(page.Records)
		if len(page.Records) == 0 || q.Offset >= page.Total {
			return nil
		}
	}
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	return st, c.callJSON(ctx, "Status", &st)
}

// Add adds one upstream.
func (c *Client) Add(ctx context.Context, uri string) (id string, created bool, err error) {
	err = c.wrap("Add", c.call(ctx, "Add", uri).Store(&id, &created))
	return id, created, err
}

// Remove removes one upstream by ID or URI.
func (c *Client) Remove(ctx context.Context, idOrURI string) (int, error) {
	var n uint32
	err := c.wrap("Remove", c.call(ctx, "Remove", idOrURI).Store(&n))
	return int(n), err
}

// Restore brings removed and retired upstreams back, by ID or URI.
func (c *Client) Restore(ctx context.Context, idsOrURIs []string) (int, error) {
	var n uint32
	err := c.wrap("Restore", c.call(ctx, "Restore", idsOrURIs).Store(&n))
	return int(n), err
}

// Import adds every upstream in text.
func (c *Client) Import(ctx context.Context, text string) (ImportReport, error) {
	var r ImportReport
	return r, c.callJSON(ctx, "Import", &r, text)
}

// Check starts a probe of ids (all when empty). Call WatchProgress first
// to see its progress.
func (c *Client) Check(ctx context.Context, ids []string) (job string, err error) {
	if ids == nil {
		ids = []string{}
	}
	err = c.wrap("Check", c.call(ctx, "Check", ids).Store(&job))
	return job, err
}

// Refresh starts fetching every source.
func (c *Client) Refresh(ctx context.Context) (job string, err error) {
	err = c.wrap("Refresh", c.call(ctx, "Refresh").Store(&job))
	return job, err
}

// Export renders the healthy upstreams.
func (c *Client) Export(ctx context.Context, format string) ([]byte, error) {
	var s string
	err := c.wrap("Export", c.call(ctx, "Export", format).Store(&s))
	return []byte(s), err
}

// TorStatus lists the Tor instances.
func (c *Client) TorStatus(ctx context.Context) ([]TorInstance, error) {
	var in []TorInstance
	return in, c.callJSON(ctx, "TorStatus", &in)
}

// TorNewnym asks for new circuits on port (every instance when 0).
func (c *Client) TorNewnym(ctx context.Context, port int) error {
	if port < 0 || port > 65535 {
		return fmt.Errorf("TorNewnym: port %d out of range: %w", port, ErrInvalid)
	}
	return c.wrap("TorNewnym", c.call(ctx, "TorNewnym", uint32(port)).Err)
}

// TorGenerate starts a torgen run.
func (c *Client) TorGenerate(ctx context.Context) (job string, err error) {
	err = c.wrap("TorGenerate", c.call(ctx, "TorGenerate").Store(&job))
	return job, err
}

// Counts reads the pool-count properties in one GetAll.
func (c *Client) Counts(ctx context.Context) (Counts, error) {
	var all map[string]dbus.Variant
	if err := c.obj.CallWithContext(ctx, "org.freedesktop.DBus.Properties.GetAll", 0, Interface).Store(&all); err != nil {
		return Counts{}, c.wrap("GetAll", err)
	}
	var cnt Counts
	u32 := func(name string) uint32 { v, _ := all[name].Value().(uint32); return v }
	cnt.Version, _ = all[PropVersion].Value().(uint64)
	cnt.Total, cnt.Healthy, cnt.Failing, cnt.Dead, cnt.Unknown = u32(PropTotal), u32(PropHealthy), u32(PropFailing), u32(PropDead), u32(PropUnknown)
	return cnt, nil
}

// watch subscribes to one signal of Interface sent by the owner of BusName
// and hands each body to deliver until ctx is done.
func (c *Client) watch(ctx context.Context, member string, deliver func([]any) bool, done func()) error {
	opts := []dbus.MatchOption{
		dbus.WithMatchSender(BusName), dbus.WithMatchObjectPath(Path),
		dbus.WithMatchInterface(Interface), dbus.WithMatchMember(member),
	}
	if err := c.conn.AddMatchSignalContext(ctx, opts...); err != nil {
		return fmt.Errorf("subscribing to %s: %w", member, err)
	}
	ch := make(chan *dbus.Signal, 64)
	c.conn.Signal(ch)
	go func() {
		defer done()
		defer func() {
			c.conn.RemoveSignal(ch)
			c.conn.RemoveMatchSignal(opts...)
		}()
		var owner string
		for {
			select {
			case <-ctx.Done():
				return
			case sig, ok := <-ch:
				if !ok {
					return
				}
				if sig.Path != Path || sig.Name != Interface+"."+member {
					continue
				}
				if sig.Sender != owner { // anyone may emit a signal on the bus: accept only the name's owner
					var o string
					if c.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, BusName).Store(&o) != nil {
						continue
					}
					owner = o
					if sig.Sender != owner {
						continue
					}
				}
				if !deliver(sig.Body) {
					return
				}
			}
		}
	}()
	return nil
}

// WatchPoolChanged delivers the version of every PoolChanged signal until
// ctx is done, then closes the channel.
func (c *Client) WatchPoolChanged(ctx context.Context) (<-chan uint64, error) {
	out := make(chan uint64, 1)
	err := c.watch(ctx, "PoolChanged", func(body []any) bool {
		if len(body) != 1 {
			return true
		}
		v, ok := body[0].(uint64)
		if !ok {
			return true
		}
		select {
		case out <- v:
		case <-ctx.Done():
			return false
		}
		return true
	}, func() { close(out) })
	return out, err
}

// WatchProgress delivers Progress signals until ctx is done, then closes
// the channel. Subscribe before starting the job so no step is missed.
func (c *Client) WatchProgress(ctx context.Context, jobs ...string) (<-chan Progress, error) {
	out := make(chan Progress, 16)
	err := c.watch(ctx, "Progress", func(body []any) bool {
		if len(body) != 3 {
			return true
		}
		job, ok1 := body[0].(string)
		done, ok2 := body[1].(uint32)
		total, ok3 := body[2].(uint32)
		if !ok1 || !ok2 || !ok3 || (len(jobs) > 0 && !slices.Contains(jobs, job)) {
			return true
		}
		select {
		case out <- Progress{Job: job, Done: done, Total: total}:
		case <-ctx.Done():
			return false
		}
		return true
	}, func() { close(out) })
	return out, err
}
