package torops

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestProcResourcesOfALiveProcess: this test process's own /proc entry
// reads as the kernel's rusage says (CPU seconds within a tick or two of
// getrusage) and a resident size of megabytes.
func TestProcResourcesOfALiveProcess(t *testing.T) {
	cpuNow := func() float64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	for cpuNow() < 0.15 {
		// burn a little CPU so the reading is well above a tick
	}
	before := cpuNow()
	res, err := procResources("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	after := cpuNow()
	// /proc counts whole ticks (10 ms): allow two below, nothing above.
	if res.cpu < before-0.02 || res.cpu > after+0.001 {
		t.Errorf("cpu %.3fs from /proc, getrusage says %.3fs..%.3fs", res.cpu, before, after)
	}
	if res.memory < 1<<20 {
		t.Errorf("memory %d bytes, want the test process's megabytes", res.memory)
	}
}

// TestResourcesHostileFiles: malformed /proc and cgroup files give an
// error naming what was wrong, never a panic or a made-up number.
func TestResourcesHostileFiles(t *testing.T) {
	const stat = "4242 (tor (a) b) S 1 1 1 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 1000 300 18446744073709551615\n"
	tests := []struct {
		name    string
		cgroup  bool
		files   map[string]string
		wantCPU float64
		wantMem int64
		wantErr string
	}{
		{"proc: a command name with spaces and parentheses", false, map[string]string{"stat": stat, "status": "Name:\ttor\nVmRSS:\t   12345 kB\n"}, 3, 12345 << 10, ""},
		{"proc: empty stat", false, map[string]string{"stat": "", "status": "VmRSS: 1 kB\n"}, 0, 0, "fields after the command name"},
		{"proc: stat cut short", false, map[string]string{"stat": "1 (tor) S 1 2 3\n", "status": "VmRSS: 1 kB\n"}, 0, 0, "fields after the command name"},
		{"proc: utime not a number", false, map[string]string{"stat": strings.Replace(stat, " 250 ", " x ", 1), "status": "VmRSS: 1 kB\n"}, 0, 0, `cpu time "x"`},
		{"proc: no VmRSS (a zombie)", false, map[string]string{"stat": stat, "status": "Name:\ttor\nState:\tZ (zombie)\n"}, 0, 0, "no VmRSS line"},
		{"proc: VmRSS garbage", false, map[string]string{"stat": stat, "status": "VmRSS: lots kB\n"}, 0, 0, "VmRSS"},
		{"proc: gone", false, map[string]string{}, 0, 0, "reading the tor process's stat"},
		{"cgroup: a unit's files", true, map[string]string{"cpu.stat": "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n", "memory.current": "11534336\n"}, 2.5, 11534336, ""},
		{"cgroup: no usage_usec", true, map[string]string{"cpu.stat": "user_usec 1\n", "memory.current": "1\n"}, 0, 0, "no usage_usec line"},
		{"cgroup: usage_usec negative", true, map[string]string{"cpu.stat": "usage_usec -5\n", "memory.current": "1\n"}, 0, 0, `usage_usec "-5"`},
		{"cgroup: memory.current empty", true, map[string]string{"cpu.stat": "usage_usec 5\n", "memory.current": ""}, 0, 0, "memory.current"},
		{"cgroup: the unit is not running", true, map[string]string{}, 0, 0, "reading the unit's cpu.stat"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "4242")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, body := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var res resources
			var err error
			if tt.cgroup {
				res, err = cgroupResources(dir)
			} else {
				res, err = procResources(root, 4242)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q (read %+v)", err, tt.wantErr, res)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.cpu != tt.wantCPU || res.memory != tt.wantMem {
				t.Errorf("read cpu %v memory %d, want %v and %d", res.cpu, res.memory, tt.wantCPU, tt.wantMem)
			}
		})
	}
}
