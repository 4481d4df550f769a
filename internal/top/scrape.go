// Package top is proxypoolctl top's logic: scraping the metrics endpoint
// (scrape.go), turning two scrapes into a view model with rates (model.go)
// and drawing that model for a terminal (render.go). The verb in
// cmd/proxypoolctl only wires flags, the config and the refresh loop.
package top

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Sample is one scrape.
type Sample struct {
	at   time.Time
	fams map[string]*dto.MetricFamily
}

// Scrape GETs the exposition format from url and decodes every family;
// an empty or unparsable page is an error, not an empty sample.
func Scrape(ctx context.Context, c *http.Client, url string) (*Sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w (is proxypoold running with metrics enabled?)", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: %s", url, resp.Status)
	}
	s := &Sample{at: time.Now(), fams: map[string]*dto.MetricFamily{}}
	dec := expfmt.NewDecoder(io.LimitReader(resp.Body, 64<<20), expfmt.ResponseFormat(resp.Header))
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("scraping %s: parsing the metrics: %w", url, err)
		}
		s.fams[mf.GetName()] = &mf
	}
	if len(s.fams) == 0 {
		return nil, fmt.Errorf("scraping %s: no metrics in the response", url)
	}
	return s, nil
}

// series is one sample of a family: its labels and value (for histograms
// the sample count).
type series struct {
	labels map[string]string
	value  float64
	hist   *dto.Histogram
}

func (s *Sample) series(name string) []series {
	if s == nil {
		return nil
	}
	var out []series
	for _, m := range s.fams[name].GetMetric() {
		ls := map[string]string{}
		for _, l := range m.GetLabel() {
			ls[l.GetName()] = l.GetValue()
		}
		v := series{labels: ls}
		switch {
		case m.Counter != nil:
			v.value = m.GetCounter().GetValue()
		case m.Gauge != nil:
			v.value = m.GetGauge().GetValue()
		case m.Untyped != nil:
			v.value = m.GetUntyped().GetValue()
		case m.Histogram != nil:
			v.value = float64(m.GetHistogram().GetSampleCount())
			v.hist = m.GetHistogram()
		}
		out = append(out, v)
	}
	return out
}

// sum adds the series of name whose labels match want (label=value pairs;
// a value starting with "!" excludes, "prefix*" matches a prefix).
func (s *Sample) sum(name string, want ...string) (float64, bool) {
	total, found := 0.0, false
	for _, v := range s.series(name) {
		if matches(v.labels, want) {
			total += v.value
			found = true
		}
	}
	return total, found
}

func matches(ls map[string]string, want []string) bool {
	for i := 0; i+1 < len(want); i += 2 {
		if !matchOne(ls[want[i]], want[i+1]) {
			return false
		}
	}
	return true
}

func matchOne(v, pattern string) bool {
	for _, alt := range strings.Split(pattern, "|") {
		neg := strings.HasPrefix(alt, "!")
		alt = strings.TrimPrefix(alt, "!")
		hit := v == alt || strings.HasSuffix(alt, "*") && strings.HasPrefix(v, strings.TrimSuffix(alt, "*"))
		if neg {
			if hit {
				return false
			}
			continue
		}
		if hit {
			return true
		}
	}
	return strings.HasPrefix(pattern, "!")
}

// byLabel sums name's series per value of label.
func (s *Sample) byLabel(name, label string) map[string]float64 {
	out := map[string]float64{}
	for _, v := range s.series(name) {
		out[v.labels[label]] += v.value
	}
	return out
}

// Sum is the sum of name's series whose labels match want (pairs as for
// sum), for readers of a scrape outside this package (the Clash API).
func (s *Sample) Sum(name string, want ...string) (float64, bool) { return s.sum(name, want...) }
