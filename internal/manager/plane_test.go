package manager

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/dbustest"
)

// TestPlane: on a private session bus the plane serves the manager (a
// client's Status sees the probe progress and the floors), and the
// store's change hook reaches a watching gateway as PoolChanged.
func TestPlane(t *testing.T) {
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("dbus-daemon not installed: %v", err)
		}
		t.Skip("dbus-daemon not installed")
	}
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", dbustest.StartSession(t).Addr)
	if !SessionBusConfigured() {
		t.Fatal("SessionBusConfigured is false with DBUS_SESSION_BUS_ADDRESS set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := NewPlane(nil)
	p.OnChange(1) // before Start: nothing to emit to, no panic
	p.Start(ctx, Options{Store: openStore(t), Floors: func() []control.GroupFloor {
		return []control.GroupFloor{{Group: "us", MinHealthy: 2}}
	}}, false)
	p.ProbeProgress(3, 7, false)

	c, err := control.Dial(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Probe.Done != 3 || st.Probe.Total != 7 {
		t.Errorf("Status probe %+v, want 3 of 7 done", st.Probe)
	}
	if len(st.Floors) != 1 || st.Floors[0].Group != "us" {
		t.Errorf("Status floors %+v, want group us", st.Floors)
	}
	ch, err := c.WatchPoolChanged(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.OnChange(42)
	select {
	case v := <-ch:
		if v != 42 {
			t.Errorf("PoolChanged(%d), want 42", v)
		}
	case <-ctx.Done():
		t.Fatal("no PoolChanged after OnChange")
	}
}
