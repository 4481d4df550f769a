package control

import (
	"encoding/xml"
	"fmt"

	"github.com/godbus/dbus/v5/introspect"
)

// Method names on Interface. ReadOnlyMethods may be called by anyone (the
// shipped bus policy allows exactly these), but List and Export redact the
// upstreams' credentials for callers who are not privileged; every other
// method mutates and is limited to root, the daemon's user and group
// proxypool.
var (
	ReadOnlyMethods = []string{"List", "Status", "Export", "TorStatus"}
	MutatingMethods = []string{"Add", "Remove", "Restore", "Import", "Check", "Refresh", "TorNewnym", "TorGenerate"}
)

// Property names on Interface, one per field of Counts.
const (
	PropVersion = "Version"
	PropTotal   = "Total"
	PropHealthy = "Healthy"
	PropFailing = "Failing"
	PropDead    = "Dead"
	PropUnknown = "Unknown"
)

func in(name, sig string) introspect.Arg {
	return introspect.Arg{Name: name, Type: sig, Direction: "in"}
}
func out(name, sig string) introspect.Arg {
	return introspect.Arg{Name: name, Type: sig, Direction: "out"}
}

var annotationJSON = []introspect.Annotation{{Name: "org.proxypool.ProxyPool1.JSON", Value: "true"}}

// managerInterface describes Interface. It is the single source of the
// exported introspection and of packaging/dbus/org.proxypool.ProxyPool1.Manager.xml.
func managerInterface() introspect.Interface {
	prop := func(name, sig string) introspect.Property {
		return introspect.Property{Name: name, Type: sig, Access: "read",
			Annotations: []introspect.Annotation{{Name: "org.freedesktop.DBus.Property.EmitsChangedSignal", Value: "true"}}}
	}
	return introspect.Interface{
		Name: Interface,
		Methods: []introspect.Method{
			{Name: "List", Args: []introspect.Arg{in("filter", "a{ss}"), in("offset", "u"), in("limit", "u"), out("records_json", "s"), out("total", "u")}, Annotations: annotationJSON},
			{Name: "Status", Args: []introspect.Arg{out("status_json", "s")}, Annotations: annotationJSON},
			{Name: "Add", Args: []introspect.Arg{in("uri", "s"), out("id", "s"), out("created", "b")}},
			{Name: "Remove", Args: []introspect.Arg{in("id_or_uri", "s"), out("removed", "u")}},
			{Name: "Restore", Args: []introspect.Arg{in("ids_or_uris", "as"), out("restored", "u")}},
			{Name: "Import", Args: []introspect.Arg{in("text", "s"), out("report_json", "s")}, Annotations: annotationJSON},
			{Name: "Check", Args: []introspect.Arg{in("ids", "as"), out("job", "s")}},
			{Name: "Refresh", Args: []introspect.Arg{out("job", "s")}},
			{Name: "Export", Args: []introspect.Arg{in("format", "s"), out("data", "s")}},
			{Name: "TorStatus", Args: []introspect.Arg{out("instances_json", "s")}, Annotations: annotationJSON},
			{Name: "TorNewnym", Args: []introspect.Arg{in("port", "u")}},
			{Name: "TorGenerate", Args: []introspect.Arg{out("job", "s")}},
		},
		Signals: []introspect.Signal{
			{Name: "PoolChanged", Args: []introspect.Arg{{Name: "version", Type: "t"}}},
			{Name: "Progress", Args: []introspect.Arg{{Name: "job", Type: "s"}, {Name: "done", Type: "u"}, {Name: "total", Type: "u"}}},
		},
		Properties: []introspect.Property{
			prop(PropVersion, "t"), prop(PropTotal, "u"), prop(PropHealthy, "u"),
			prop(PropFailing, "u"), prop(PropDead, "u"), prop(PropUnknown, "u"),
		},
	}
}

// InterfaceXML returns the introspection document of Interface alone, as
// installed under /usr/share/dbus-1/interfaces/.
func InterfaceXML() string {
	n := introspect.Node{Interfaces: []introspect.Interface{managerInterface()}}
	b, err := xml.MarshalIndent(n, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("marshalling the introspection of %s: %v", Interface, err)) // static data: cannot happen
	}
	return doctype + string(b) + "\n"
}

const doctype = `<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
`

func node() *introspect.Node {
	return &introspect.Node{
		Name: string(Path),
		// introspect.NewIntrospectable adds Introspectable and Peer itself
		// (listing them here made it add Peer twice, which busctl rejects).
		Interfaces: []introspect.Interface{
			{Name: "org.freedesktop.DBus.Properties", Methods: []introspect.Method{
				{Name: "Get", Args: []introspect.Arg{in("interface", "s"), in("property", "s"), out("value", "v")}},
				{Name: "GetAll", Args: []introspect.Arg{in("interface", "s"), out("props", "a{sv}")}},
				{Name: "Set", Args: []introspect.Arg{in("interface", "s"), in("property", "s"), in("value", "v")}},
			}, Signals: []introspect.Signal{
				{Name: "PropertiesChanged", Args: []introspect.Arg{{Name: "interface", Type: "s"}, {Name: "changed", Type: "a{sv}"}, {Name: "invalidated", Type: "as"}}},
			}},
			managerInterface(),
		},
	}
}
