package clashbackend_test

import (
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/proxypool/proxypool/internal/dashtest"
)

// TestDashboard opens the metacubexd build in headless Chromium against
// real mihomo, then against proxypool's handler over a live pool.
func TestDashboard(t *testing.T) {
	ui := dashtest.VendorUI(t)
	tg := startTargets(t)
	t.Run("mihomo", func(t *testing.T) {
		c := startMihomo(t, tg, 0)
		target, _ := url.Parse(c.Base)
		rc := &dashtest.Recorder{Next: httputil.NewSingleHostReverseProxy(target)}
		dashtest.Drive(t, dashtest.Dashboard{Base: dashtest.ServeUI(t, "127.87.0.1", ui, rc), Secret: c.Secret, Groups: []string{"lb", "GLOBAL"},
			Members: []string{"fleet-a", "fleet-b"}, Proxy: c.Proxy, Target: tg.echo, Shots: dashtest.ShotsDir(t, "mihomo"), Delays: rc.Answered})
	})
	t.Run("proxypool", func(t *testing.T) {
		w := newWorld(t, 6, tg.delayURL)
		rc := &dashtest.Recorder{Next: w.handler}
		var members []string
		for _, m := range w.fleet.Members() {
			members = append(members, m.Upstream.ID)
		}
		dashtest.Drive(t, dashtest.Dashboard{Base: dashtest.ServeUI(t, "127.87.0.1", ui, rc), Groups: []string{"us", "de", w.gwAddr, w.usAddr, "GLOBAL"},
			Members: members, Proxy: w.gwAddr, Target: tg.echo, Shots: dashtest.ShotsDir(t, "proxypool"), Delays: rc.Answered})
	})
}
