package torops

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/proxypool/proxypool/internal/torctl"
)

// Usage is what one tor instance costs and carries, as last read.
type Usage struct {
	Port  int
	Group string
	// CPUSeconds and MemoryBytes come from the tor@<port> unit's cgroup
	// (systemd) or the child's /proc entry (`run`): totals since it
	// started. Resources is false when neither could be read.
	CPUSeconds  float64
	MemoryBytes int64
	Resources   bool
	// ReadBytes and WrittenBytes are its GETINFO traffic/read and
	// traffic/written; Traffic is false when its control port did not
	// answer.
	ReadBytes, WrittenBytes uint64
	Traffic                 bool
}

// userHZ is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// which Linux fixes at 100 for every user-space interface.
const userHZ = 100

// Usage reads every instance's resources and traffic. An instance that
// cannot be read is listed without them (the metrics keep its port), so
// one stuck control port costs the others nothing but its timeout.
func (t *Tor) Usage(ctx context.Context) ([]Usage, error) {
	recs, err := t.instances(ctx, "")
	if err != nil {
		return nil, err
	}
	pw, err := t.password(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("reading the tor control password: %w", err)
	}
	out := make([]Usage, 0, len(recs))
	for _, r := range recs {
		u := Usage{Port: r.Port, Group: r.Group}
		var res resources
		if t.o.Systemd {
			res, err = cgroupResources(filepath.Join(t.o.CgroupRoot, "system.slice", "tor@"+strconv.Itoa(r.Port)+".service"))
		} else if pid := t.pid(r.Port); pid > 0 {
			res, err = procResources(t.o.ProcRoot, pid)
		} else {
			err = fmt.Errorf("no process for port %d", r.Port)
		}
		if err == nil {
			u.CPUSeconds, u.MemoryBytes, u.Resources = res.cpu, res.memory, true
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		u.ReadBytes, u.WrittenBytes, err = traffic(cctx, t.controlAddr(r.Port), pw)
		cancel()
		u.Traffic = err == nil
		out = append(out, u)
	}
	return out, nil
}

// pid is the process of `run`'s child on port; 0 when none runs (or
// under systemd, where the unit's cgroup is read instead).
func (t *Tor) pid(port int) int {
	if f := t.pids.Load(); f != nil {
		return (*f)(port)
	}
	return 0
}

type resources struct {
	cpu    float64 // seconds
	memory int64   // bytes
}

// cgroupResources reads a cgroup v2 directory: cpu.stat's usage_usec and
// memory.current.
func cgroupResources(dir string) (resources, error) {
	var res resources
	f, err := os.Open(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return res, fmt.Errorf("reading the unit's cpu.stat: %w", err)
	}
	defer f.Close()
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "usage_usec "); ok {
			us, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return res, fmt.Errorf("%s: usage_usec %q: %w", f.Name(), v, err)
			}
			res.cpu, found = float64(us)/1e6, true
		}
	}
	if err := sc.Err(); err != nil {
		return res, fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	if !found {
		return res, fmt.Errorf("%s has no usage_usec line", f.Name())
	}
	b, err := os.ReadFile(filepath.Join(dir, "memory.current"))
	if err != nil {
		return res, fmt.Errorf("reading the unit's memory.current: %w", err)
	}
	if res.memory, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err != nil {
		return res, fmt.Errorf("%s/memory.current %q: %w", dir, b, err)
	}
	return res, nil
}

// procResources reads /proc/<pid>/stat (utime + stime) and the VmRSS line
// of /proc/<pid>/status.
func procResources(procRoot string, pid int) (resources, error) {
	var res resources
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return res, fmt.Errorf("reading the tor process's stat: %w", err)
	}
	// The command name, in parentheses, may hold spaces and parentheses:
	// the fields that follow start after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	fields := strings.Fields(string(b[i+1:]))
	if i < 0 || len(fields) < 13 {
		return res, fmt.Errorf("%s/stat: %d fields after the command name, want at least 13", dir, len(fields))
	}
	var ticks uint64
	for _, f := range fields[11:13] { // utime, stime: fields 14 and 15 of stat
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return res, fmt.Errorf("%s/stat: cpu time %q: %w", dir, f, err)
		}
		ticks += n
	}
	res.cpu = float64(ticks) / userHZ
	st, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return res, fmt.Errorf("reading the tor process's status: %w", err)
	}
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return res, fmt.Errorf("%s/status: VmRSS %q: %w", dir, v, err)
			}
			res.memory = kb << 10
			return res, nil
		}
	}
	return res, fmt.Errorf("%s/status has no VmRSS line", dir)
}

// traffic asks the tor at addr for the bytes it read and wrote.
func traffic(ctx context.Context, addr, password string) (read, written uint64, err error) {
	c, err := torctl.DialPassword(ctx, addr, password)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	info, err := c.GetInfo(ctx, "traffic/read", "traffic/written")
	if err != nil {
		return 0, 0, fmt.Errorf("GETINFO traffic from %s: %w", addr, err)
	}
	if read, err = strconv.ParseUint(info["traffic/read"], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("traffic/read from %s: %w", addr, err)
	}
	if written, err = strconv.ParseUint(info["traffic/written"], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("traffic/written from %s: %w", addr, err)
	}
	return read, written, nil
}
