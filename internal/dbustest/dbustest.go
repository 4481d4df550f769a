package dbustest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// SystemConf is the distribution's system bus configuration that
// StartSystem rewrites.
const SystemConf = "/usr/share/dbus-1/system.conf"

// Bus is a running private dbus-daemon.
type Bus struct {
	Addr string // the address to pass to dbus.Connect
	Dir  string // holds the config, the socket and the policy dir; mode 0755
}

const sessionConf = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`

// StartSession starts a bus that lets any local user connect, own any
// name and call anything.
func StartSession(t testing.TB) *Bus {
	t.Helper()
	dir := tempDir(t)
	conf := fmt.Sprintf(sessionConf, filepath.Join(dir, "bus_socket"))
	return start(t, dir, conf)
}

var (
	dropLines = regexp.MustCompile(`(?m)^\s*<(user|pidfile|servicehelper)>[^<]*</(user|pidfile|servicehelper)>\s*\n` +
		`|^\s*<(fork|syslog|standard_system_servicedirs)/>\s*\n` +
		`|^\s*<include[^>]*>[^<]*</include>\s*\n` +
		`|^\s*<includedir>/etc[^<]*</includedir>\s*\n`)
	listenLine = regexp.MustCompile(`<listen>[^<]*</listen>`)
	systemDir  = regexp.MustCompile(`<includedir>system\.d</includedir>`)
)

// SystemConfig rewrites system.conf text so that the bus listens on
// socket, runs as the caller, forks nothing, and includes policies only
// from policyDir (never /etc).
func SystemConfig(systemConf, socket, policyDir string) (string, error) {
	s := dropLines.ReplaceAllString(systemConf, "")
	if n := len(listenLine.FindAllString(s, -1)); n != 1 {
		return "", fmt.Errorf("rewriting %s: want one <listen>, found %d", SystemConf, n)
	}
	s = listenLine.ReplaceAllString(s, "<listen>unix:path="+socket+"</listen>")
	if !systemDir.MatchString(s) {
		return "", fmt.Errorf("rewriting %s: no <includedir>system.d</includedir>", SystemConf)
	}
	s = systemDir.ReplaceAllString(s, "<includedir>"+policyDir+"</includedir>")
	if strings.Contains(s, "/etc/") || strings.Contains(s, "<user>") {
		return "", fmt.Errorf("rewriting %s: a reference to /etc or <user> survived", SystemConf)
	}
	return s, nil
}

// StartSystem starts a bus with the distribution's deny-by-default system
// policy plus exactly the given policy files.
func StartSystem(t testing.TB, policies ...string) *Bus {
	t.Helper()
	raw, err := os.ReadFile(SystemConf)
	if err != nil {
		t.Skipf("no system bus config: %v", err)
	}
	dir := tempDir(t)
	pdir := filepath.Join(dir, "system.d")
	if err := os.Mkdir(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range policies {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("reading policy: %v", err)
		}
		if err := os.WriteFile(filepath.Join(pdir, filepath.Base(p)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf, err := SystemConfig(string(raw), filepath.Join(dir, "system_bus_socket"), pdir)
	if err != nil {
		t.Fatal(err)
	}
	return start(t, dir, conf)
}

// tempDir makes a directory other users can traverse, so that tests can
// connect as an unprivileged user.
func tempDir(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Skip("dbus-daemon not installed (apt-get install dbus-daemon)")
	}
	dir, err := os.MkdirTemp("", "dbustest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func start(t testing.TB, dir, conf string) *Bus {
	t.Helper()
	cf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dbus-daemon", "--nofork", "--nopidfile", "--nosyslog", "--print-address=1", "--config-file="+cf)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dbus-daemon: %v", err)
	}
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-waited
	})
	addr := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		addr <- strings.TrimSpace(line)
	}()
	select {
	case a := <-addr:
		if a == "" {
			<-waited
			t.Fatalf("dbus-daemon printed no address: %s", stderr.String())
		}
		return &Bus{Addr: a, Dir: dir}
	case <-waited:
		t.Fatalf("dbus-daemon exited: %s", stderr.String())
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-waited
		t.Fatalf("dbus-daemon printed no address within 10s: %s", stderr.String())
	}
	return nil
}
