package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/manager"
	"github.com/proxypool/proxypool/internal/upstream"
)

// exportExamples is what each --format looks like, for --help.
const exportExamples = `
formats:
  json   live_proxies.json: an array of records, e.g.
         [{"id":"5f0c…","type":"socks5","protocol":"socks5","host":"203.0.113.9","port":1080,
           "uri":"socks5://203.0.113.9:1080","exit_ip":"198.51.100.4","country":"DE",
           "anonymity":"elite","asn":64500,"org":"Example Cable","class":"residential",
           "ipv6":true,"latency_ms":212,"timeout":0.212,"checked_at":"2026-12-07T10:00:00Z",…}]
         a kind with no link form carries "clash": {its mihomo mapping} instead of "uri";
         "proxypoolctl import" of the file gives back the same upstreams
  txt    one link a line: socks5://203.0.113.9:1080, http://user:pass@203.0.113.10:3128,
         vless://…, ss://…, the share links v2rayN reads; a record no link carries whole is
         left out and a last "# N upstreams …" line says so (credentials only for root or
         group proxypool)
  clash  a mihomo/Clash document: proxies: [{name: …, type: vmess, server: …, …}]
filters (--anonymity, --country, --group, --source, --min-score, --asn, --class) select among the healthy ones.
`

// runExport is "proxypoolctl export --format json|txt|clash [filters]
// [--output FILE]"; --json is the same as --format json.
func runExport(ctx context.Context, c *cmd) int {
	format := c.fs.String("format", "", "`FORMAT`: json (live_proxies.json), txt (one link a line) or clash (mihomo proxies: YAML)")
	output := c.fs.String("output", "", "write to `FILE` instead of standard output")
	var q control.ListQuery
	anon := c.fs.String("anonymity", "", "only upstreams whose last check found `A` (elite, anonymous, transparent)")
	c.fs.StringVar(&q.Country, "country", "", "only upstreams whose exit is in country `CC`")
	c.fs.StringVar(&q.Group, "group", "", "only upstreams of the explicit group `G` (tor instances)")
	c.fs.StringVar(&q.Source, "source", "", "only upstreams listed by source `S`")
	c.fs.Float64Var(&q.MinScore, "min-score", 0, "only upstreams scoring at least `N` (0–1000)")
	asn, class := qualityFlags(c)
	usage := c.fs.Usage
	c.fs.Usage = func() { usage(); fmt.Fprint(c.fs.Output(), exportExamples) }
	if _, code, ok := c.parse(""); !ok {
		return code
	}
	if !parseQuality(c, "export", &q, *asn, *class) {
		return exitUsage
	}
	if *format == "" {
		*format = control.FormatTXT
		if c.JSON {
			*format = control.FormatJSON
		}
	}
	switch *format {
	case control.FormatJSON, control.FormatTXT, control.FormatClash:
	default:
		fmt.Fprintf(c.stderr, "proxypoolctl export: unknown --format %q (want json, txt or clash)\n", *format)
		return exitUsage
	}
	q.Anonymity = upstream.Anonymity(strings.ToLower(*anon))
	var data []byte
	code := exitOK
	if q == (control.ListQuery{}) {
		data, code = fetch(ctx, c, true, func(b *backend) ([]byte, error) { return b.Export(ctx, *format) })
	} else {
		q.State = upstream.Healthy
		data, code = fetch(ctx, c, true, func(b *backend) ([]byte, error) { return exportWhere(ctx, b, q, *format) })
	}
	if code != exitOK {
		return code
	}
	if *output != "" {
		if err := os.WriteFile(*output, data, 0o644); err != nil {
			return c.fail(fmt.Errorf("writing %s: %w", *output, err))
		}
		return exitOK
	}
	if _, err := c.stdout.Write(data); err != nil {
		return c.fail(err)
	}
	return exitOK
}

// exportWhere renders the upstreams q selects, best first as Export does,
// from the records List gives this caller (so with the same redaction).
func exportWhere(ctx context.Context, b *backend, q control.ListQuery, format string) ([]byte, error) {
	var recs []upstream.Record
	err := control.ListAll(ctx, b, q, func(p control.ListPage) error {
		recs = append(recs, p.Records...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(recs, func(a, b upstream.Record) int { return cmp.Compare(b.Score, a.Score) })
	switch format {
	case control.FormatJSON:
		return manager.ExportJSON(recs)
	case control.FormatClash:
		return manager.ExportClash(recs)
	}
	return manager.ExportTXT(recs), nil
}
