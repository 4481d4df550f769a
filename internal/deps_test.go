package internal_test

// This file enforces the import rules of docs/STYLE.md §2.2, tailscale
// deptest-style, over every package of ours: each one under internal/ and
// each program under cmd/ must be listed, so a new package states its
// place before it can be imported.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

const (
	module  = "github.com/proxypool/proxypool"
	mihomo  = "github.com/metacubex/mihomo"
	sqlite  = "github.com/mattn/go-sqlite3"
	logrus  = "github.com/sirupsen/logrus"
	vocab   = "upstream" // the shared vocabulary every non-leaf package may import
	logging = "internal/logging"
)

// mayImport is §2.2's "may import (internal)" column, for direct non-test
// imports, relative to internal/. Every package except the leaves may also
// import internal/upstream. A package under a listed one (internal/torgen/exits)
// follows its parent's rule and may import its parent's other subpackages.
// A package not listed here breaks the rules.
var mayImport = map[string][]string{
	// layer 0: leaves import nothing of ours, not even upstream
	"upstream":   nil,
	"atomicfile": nil,
	"httpproxy":  nil,
	"proxymux":   nil,
	"logging":    nil,
	"units":      nil,
	"sd":         nil,
	"torctl":     nil,
	"top":        nil, // proxypoolctl top: scrape, view model, render
	"testtool":   nil, // test helper: external programs a test needs
	// layer 1: adapters, and the SOCKS5 codec, whose reply table names
	// each code's upstream.Cause
	"socks":   {vocab},
	"geoip":   {vocab}, // exit classes are upstream.Class; geoip/geoiptest writes mmdb files for tests
	"config":  {vocab},
	"parse":   {vocab},
	"store":   {vocab},
	"dial":    {vocab, "socks"},
	"control": {vocab},
	"metrics": {vocab},

	// test helper: a throw-away PostgreSQL per test binary
	"store/pgtest": {"testtool"},

	// layer 2: logic packages never import each other
	"source":  {vocab, "parse", "logging"},
	"probe":   {vocab, "geoip"},
	"pool":    {vocab},
	"gateway": {vocab, "socks", "httpproxy", "proxymux", "logging"},
	"torgen":  {vocab, "atomicfile"},
	"checks":  {vocab}, // target and speed checks through healthy upstreams
	// the Clash external-controller handler: its Backend is all it knows
	"clashapi": nil,
	// layer 3: daemon services over the store and the logic packages,
	// each wired by cmd/proxypoold
	"manager": {vocab, "control", "parse", "store"},
	"slo":     {vocab, "logging", "pool"},
	"torops":  {vocab, "control", "logging", "slo", "store", "torctl", "torgen", "units"},
	// the HTTP control API over control.Manager (server and client)
	"api": {vocab, "control"},
	// clashapi.Backend over the store, the pool and the gateway's tunnels
	"clashbackend": {vocab, "clashapi", "gateway", "store", "top"},
	"reload":       {"config", "store"}, // SIGHUP: re-read the config, apply, record
	// test helpers
	"fleet":    {vocab, "socks", "httpproxy"},
	"dbustest": nil,
	"dashtest": {"testtool"},
	"tornet":   nil,
}

// cmdMayImport is, for each program under cmd/, the internal packages it
// may import (a package's subpackages included). A program not listed
// here breaks the rules.
var cmdMayImport = map[string][]string{
	// the daemon wires everything but the protocol servers and the test helpers
	"proxypoold": {vocab, "api", "checks", "clashapi", "clashbackend", "config", "control", "dial", "gateway", "geoip", "logging", "manager", "metrics",
		"pool", "probe", "reload", "sd", "slo", "source", "store", "torctl", "torgen", "torops", "units"},
	// the operator's CLI: D-Bus or the HTTP API, or the store read-only, and offline parse
	"proxypoolctl": {vocab, "api", "config", "control", "manager", "parse", "store", "top"},
	// test and benchmark programs
	"fleet":   {"fleet"},
	"loadgen": {"socks"},
}

// mihomoImporters may import mihomo directly; everything else reaches it, if
// at all, through them.
var mihomoImporters = []string{"dial", "parse", "fleet"}

// noHeavyDeps must not depend on sqlite or mihomo, even transitively.
var noHeavyDeps = []string{"checks", "clashapi", "gateway", "pool", "probe"}

type pkg struct {
	ImportPath string
	Dir        string
	Imports    []string
	Deps       []string
	Error      *struct{ Err string }
}

func goList(t *testing.T) (root string, pkgs []pkg) {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(gobin); err != nil {
			t.Skip("no go command to list packages with")
		}
	}
	out, err := exec.Command(gobin, "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root = filepath.Dir(strings.TrimSpace(string(out)))
	cmd := exec.Command(gobin, "list", "-e", "-json=ImportPath,Dir,Imports,Deps,Error", "./internal/...", "./cmd/...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("go list ./internal/... ./cmd/...: %v\n%s", err, stderr.String())
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		if p.Error != nil {
			// Someone's package is mid-edit; judge what could be listed.
			t.Logf("%s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages under ./internal or ./cmd")
	}
	return root, pkgs
}

// rel is "dial" for github.com/proxypool/proxypool/internal/dial, "" for
// anything outside internal/.
func rel(importPath string) string {
	s, ok := strings.CutPrefix(importPath, module+"/internal/")
	if !ok {
		return ""
	}
	return s
}

// program is "proxypoold" for github.com/proxypool/proxypool/cmd/proxypoold,
// "" for anything else.
func program(importPath string) string {
	s, ok := strings.CutPrefix(importPath, module+"/cmd/")
	if !ok {
		return ""
	}
	return s
}

// ruleFor finds the listed package p is, or is under.
func ruleFor(p string) (name string, ok bool) {
	for n := p; n != ""; n = parent(n) {
		if _, ok := mayImport[n]; ok {
			return n, true
		}
	}
	return "", false
}

func parent(p string) string {
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[:i]
	}
	return ""
}

func under(p, base string) bool { return p == base || strings.HasPrefix(p, base+"/") }

func underAny(p string, bases []string) bool {
	for _, b := range bases {
		if under(p, b) {
			return true
		}
	}
	return false
}

func TestImportRules(t *testing.T) {
	_, pkgs := goList(t)
	for _, v := range checkImports(pkgs) {
		t.Error(v)
	}
}

// checkImports returns one line per broken rule.
func checkImports(pkgs []pkg) []string {
	var bad []string
	for _, p := range pkgs {
		if prog := program(p.ImportPath); prog != "" {
			allowed, ok := cmdMayImport[prog]
			if !ok {
				bad = append(bad, fmt.Sprintf("%s is not listed in cmdMayImport: name the internal packages it may import", p.ImportPath))
				continue
			}
			for _, imp := range p.Imports {
				if ir := rel(imp); ir != "" && !underAny(ir, allowed) {
					bad = append(bad, fmt.Sprintf("%s imports internal/%s; cmdMayImport allows it only %s", p.ImportPath, ir, describe(allowed)))
				}
			}
			continue
		}
		r := rel(p.ImportPath)
		if r == "" {
			continue
		}
		// internal → internal, from the §2.2 table.
		rule, ok := ruleFor(r)
		if !ok {
			bad = append(bad, fmt.Sprintf("%s is not listed in mayImport: give it a layer and the packages it may import (STYLE.md §2.2)", p.ImportPath))
		} else {
			allowed := mayImport[rule]
			for _, imp := range p.Imports {
				ir := rel(imp)
				if ir == "" || under(ir, rule) {
					continue // external, or within the package's own tree
				}
				if !underAny(ir, allowed) {
					bad = append(bad, fmt.Sprintf("%s imports internal/%s; STYLE.md §2.2 allows it only %s", p.ImportPath, ir, describe(allowed)))
				}
			}
		}
		// mihomo is fenced into dial and parse (and the fleet test helper).
		if !underAny(r, mihomoImporters) {
			for _, imp := range p.Imports {
				if under(imp, mihomo) {
					bad = append(bad, fmt.Sprintf("%s imports %s; only internal/dial and internal/parse (and internal/fleet) may", p.ImportPath, imp))
				}
			}
		}
		// The hot path stays light.
		if underAny(r, noHeavyDeps) {
			for _, d := range p.Deps {
				if under(d, mihomo) || under(d, sqlite) {
					bad = append(bad, fmt.Sprintf("%s depends on %s (through %s); gateway, pool and probe must not", p.ImportPath, d, via(pkgs, p, d)))
					break
				}
			}
		}
		// The vocabulary depends on nothing of ours, even indirectly.
		if r == "upstream" {
			for _, d := range p.Deps {
				if under(d, module) {
					bad = append(bad, fmt.Sprintf("%s depends on %s; upstream must import nothing internal", p.ImportPath, d))
				}
			}
		}
	}
	return bad
}

func TestImportRuleChecker(t *testing.T) {
	in := func(s string) string { return module + "/internal/" + s }
	tests := []struct {
		name string
		pkgs []pkg
		want []string // substrings, one per violation, in order
	}{
		{"clean tree", []pkg{
			{ImportPath: in("source"), Imports: []string{in("parse"), in("upstream"), "net/http"}, Deps: []string{mihomo + "/adapter", in("parse")}},
			{ImportPath: in("parse"), Imports: []string{mihomo + "/common/convert", in("upstream")}},
			{ImportPath: in("torgen"), Imports: []string{in("torgen/exits"), in("atomicfile")}},
			{ImportPath: in("torgen/exits"), Imports: []string{in("upstream")}},
			{ImportPath: module + "/cmd/proxypoold", Imports: []string{mihomo + "/log", in("store"), in("torgen/exits")}},
			{ImportPath: module + "/cmd/proxypoolctl", Imports: []string{in("control"), in("upstream")}},
		}, nil},
		{"unlisted package", []pkg{{ImportPath: in("newpkg"), Imports: []string{in("upstream")}}},
			[]string{"internal/newpkg is not listed in mayImport"}},
		{"unlisted program", []pkg{{ImportPath: module + "/cmd/newtool", Imports: []string{in("store")}}},
			[]string{"cmd/newtool is not listed in cmdMayImport"}},
		{"program imports outside its list", []pkg{{ImportPath: module + "/cmd/proxypoolctl", Imports: []string{in("control"), in("gateway"), in("fleet")}}},
			[]string{"cmd/proxypoolctl imports internal/gateway; cmdMayImport allows it only", "cmd/proxypoolctl imports internal/fleet"}},
		{"daemon imports a test helper", []pkg{{ImportPath: module + "/cmd/proxypoold", Imports: []string{in("tornet")}}},
			[]string{"cmd/proxypoold imports internal/tornet"}},
		{"service imports the gateway", []pkg{{ImportPath: in("torops"), Imports: []string{in("store"), in("gateway")}}},
			[]string{"internal/torops imports internal/gateway"}},
		{"logic imports logic", []pkg{{ImportPath: in("probe"), Imports: []string{in("pool")}}},
			[]string{"internal/probe imports internal/pool; STYLE.md §2.2 allows it only internal/upstream, internal/geoip"}},
		{"leaf imports upstream", []pkg{{ImportPath: in("httpproxy"), Imports: []string{in("upstream")}}},
			[]string{"allows it only nothing internal"}},
		{"subpackage follows parent", []pkg{{ImportPath: in("torgen/torrc"), Imports: []string{in("store")}}},
			[]string{"internal/torgen/torrc imports internal/store"}},
		{"mihomo outside the fence", []pkg{{ImportPath: in("source"), Imports: []string{mihomo + "/constant"}}},
			[]string{"internal/source imports " + mihomo + "/constant; only internal/dial"}},
		{"gateway reaches sqlite", []pkg{
			{ImportPath: in("gateway"), Imports: []string{in("store")}, Deps: []string{sqlite, in("store")}},
			{ImportPath: in("store"), Imports: []string{sqlite}, Deps: []string{sqlite}},
		}, []string{"internal/gateway imports internal/store", "depends on " + sqlite + " (through " + in("store") + ")"}},
		{"pool reaches mihomo", []pkg{{ImportPath: in("pool"), Deps: []string{mihomo + "/adapter"}}},
			[]string{"internal/pool depends on " + mihomo + "/adapter"}},
		{"upstream imports us", []pkg{{ImportPath: in("upstream"), Imports: []string{in("geoip")}, Deps: []string{in("geoip")}}},
			[]string{"internal/upstream imports internal/geoip", "upstream must import nothing internal"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkImports(tt.pkgs)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d violations %q, want %d", len(got), got, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("violation %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func describe(allowed []string) string {
	if len(allowed) == 0 {
		return "nothing internal"
	}
	s := make([]string, len(allowed))
	for i, a := range allowed {
		s[i] = "internal/" + a
	}
	return strings.Join(s, ", ")
}

// via names the direct import of p that brings in dep, to make the failure
// actionable.
func via(pkgs []pkg, p pkg, dep string) string {
	byPath := map[string]pkg{}
	for _, q := range pkgs {
		byPath[q.ImportPath] = q
	}
	for _, imp := range p.Imports {
		if imp == dep {
			return "a direct import"
		}
		if q, ok := byPath[imp]; ok {
			for _, d := range q.Deps {
				if d == dep {
					return imp
				}
			}
		}
	}
	return "an import"
}

// globalLogrus are logrus's package-level functions that log through, or
// configure, the global logger that mihomo's init rewrites. logrus.New,
// NewEntry and the types stay allowed.
var globalLogrus = map[string]bool{}

func init() {
	for _, base := range []string{"Trace", "Debug", "Info", "Print", "Warn", "Warning", "Error", "Fatal", "Panic"} {
		globalLogrus[base] = true
		globalLogrus[base+"f"] = true
		globalLogrus[base+"ln"] = true
		globalLogrus[base+"Fn"] = true
	}
	for _, f := range []string{
		"WithField", "WithFields", "WithError", "WithContext", "WithTime", "StandardLogger",
		"SetOutput", "SetLevel", "SetFormatter", "SetReportCaller", "SetBufferPool", "AddHook",
		"GetLevel", "IsLevelEnabled", "Exit", "RegisterExitHandler", "DeferExitHandler",
	} {
		globalLogrus[f] = true
	}
}

// globalLogrusCalls reports every use of a global-logger function in src.
func globalLogrusCalls(fset *token.FileSet, f *ast.File) []string {
	var names []string // local names of the logrus import
	var bad []string
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		if path != logrus {
			continue
		}
		switch {
		case imp.Name == nil:
			names = append(names, "logrus")
		case imp.Name.Name == ".":
			bad = append(bad, fmt.Sprintf("%s: dot-import of logrus", fset.Position(imp.Pos())))
		case imp.Name.Name != "_":
			names = append(names, imp.Name.Name)
		}
	}
	if len(names) == 0 {
		return bad
	}
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		x, ok := sel.X.(*ast.Ident)
		if !ok || x.Obj != nil { // x.Obj != nil: a local variable, not the package
			return true
		}
		for _, name := range names {
			if x.Name == name && globalLogrus[sel.Sel.Name] {
				bad = append(bad, fmt.Sprintf("%s: %s.%s uses logrus's global logger", fset.Position(sel.Pos()), name, sel.Sel.Name))
			}
		}
		return true
	})
	return bad
}

func TestNoGlobalLogrus(t *testing.T) {
	root, _ := goList(t)
	var files int
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			r, _ := filepath.Rel(root, path)
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") ||
				name == "testdata" || name == "vendor" || name == "var" || filepath.ToSlash(r) == logging) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Logf("skipping %s: %v", path, err) // mid-edit; the build will say
			return nil
		}
		files++
		for _, b := range globalLogrusCalls(fset, f) {
			t.Errorf("%s (take a logrus.FieldLogger; STYLE.md §4.4)", b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("no Go files found to check")
	}
}

// TestGlobalLogrusDetector proves the detector catches what it must and
// leaves the rest alone.
func TestGlobalLogrusDetector(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"package function", `import "github.com/sirupsen/logrus"
func f() { logrus.Info("x") }`, []string{"logrus.Info"}},
		{"aliased import", `import log "github.com/sirupsen/logrus"
func f() { log.WithField("a", 1).Warn("x"); log.Errorf("y") }`, []string{"log.WithField", "log.Errorf"}},
		{"function value", `import "github.com/sirupsen/logrus"
var warn = logrus.Warnln`, []string{"logrus.Warnln"}},
		{"global reconfigured", `import "github.com/sirupsen/logrus"
func f() { logrus.SetLevel(logrus.DebugLevel); _ = logrus.StandardLogger() }`, []string{"logrus.SetLevel", "logrus.StandardLogger"}},
		{"dot import", `import . "github.com/sirupsen/logrus"
func f() { Info("x") }`, []string{"dot-import"}},
		{"own logger is fine", `import "github.com/sirupsen/logrus"
func f(log logrus.FieldLogger) { l := logrus.New(); l.Info("x"); log.WithField("a", 1).Info("y"); _ = logrus.Fields{}; _ = logrus.InfoLevel }`, nil},
		{"shadowing variable is fine", `import "github.com/sirupsen/logrus"
func f() { logrus := logrus.New(); logrus.Info("x") }`, nil},
		{"other package named log", `import "log"
func f() { log.Print("x") }`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, "x.go", "package x\n"+tt.src, 0)
			if err != nil {
				t.Fatal(err)
			}
			got := globalLogrusCalls(fset, f)
			if len(got) != len(tt.want) {
				t.Fatalf("got %q, want %d findings %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("finding %d = %q, want it to mention %q", i, got[i], w)
				}
			}
		})
	}
}
