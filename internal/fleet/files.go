package fleet

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// URI is the member as one line of a proxy list: scheme://[user[:pass]@]host:port
// for socks5/socks4/http, a share link for ss (SIP002), vmess (v2rayN
// base64 JSON) and trojan.
func (m *Member) URI() string {
	host, port, _ := net.SplitHostPort(m.Addr)
	name := url.PathEscape(m.Name())
	switch m.Spec.Kind {
	case SOCKS5, HTTP, SOCKS4:
		u := url.URL{Scheme: string(m.Spec.Kind), Host: m.Addr}
		if m.Spec.Username != "" {
			if m.Spec.Kind == SOCKS4 {
				u.User = url.User(m.Spec.Username)
			} else {
				u.User = url.UserPassword(m.Spec.Username, m.Spec.Password)
			}
		}
		return u.String()
	case SS:
		cred := base64.RawURLEncoding.EncodeToString([]byte(ssCipher + ":" + ssPassword))
		return "ss://" + cred + "@" + m.Addr + "#" + name
	case VMess:
		j, _ := json.Marshal(map[string]string{
			"v": "2", "ps": m.Name(), "add": host, "port": port, "id": vmessUUID,
			"aid": "0", "scy": "auto", "net": "tcp", "type": "none", "tls": "",
		})
		return "vmess://" + base64.StdEncoding.EncodeToString(j)
	case Trojan:
		return "trojan://" + url.PathEscape(trojanPassword) + "@" + m.Addr +
			"?security=tls&sni=" + trojanSNI + "&allowInsecure=1&type=tcp#" + name
	}
	return ""
}

// WriteList writes one URI per member (see Member.URI), for sources and
// import.
func (f *Fleet) WriteList(path string) error {
	return writeFile(path, func(w *bufio.Writer) {
		for _, m := range f.members {
			w.WriteString(m.URI())
			w.WriteByte('\n')
		}
	})
}

// WriteGeoIP writes a Tor-format geoip file ("INTIPLOW,INTIPHIGH,CC" lines)
// mapping each member's exit /24 to its Country. Members with no Country,
// and Local members (whose exit /24 is the prober's own), are left out.
func (f *Fleet) WriteGeoIP(path string) error {
	return writeFile(path, func(w *bufio.Writer) {
		w.WriteString("# fleet geoip: each member's exit /24\n")
		for _, m := range f.members {
			if m.Spec.Country == "" || m.Spec.Behavior == Local {
				continue
			}
			ip := net.ParseIP(m.ExitIP).To4()
			lo := binary.BigEndian.Uint32(ip) &^ 0xff
			fmt.Fprintf(w, "%d,%d,%s\n", lo, lo|0xff, m.Spec.Country)
		}
	})
}

// WriteFilesT writes the list (dir/list.txt) and the GeoIP file (dir/geoip)
// a daemon under test takes as its source and its probe's geoip, and
// returns their paths; it fails t when either cannot be written.
func (f *Fleet) WriteFilesT(t testing.TB, dir string) (list, geoip string) {
	t.Helper()
	list, geoip = filepath.Join(dir, "list.txt"), filepath.Join(dir, "geoip")
	if err := f.WriteList(list); err != nil {
		t.Fatalf("writing the fleet list: %v", err)
	}
	if err := f.WriteGeoIP(geoip); err != nil {
		t.Fatalf("writing the fleet geoip: %v", err)
	}
	return list, geoip
}

// WriteConfigT writes the fleet's files (WriteFilesT) and dir/proxypool.yaml
// for a daemon under test that takes them as its one source and geoip and
// checks through judge within checkTimeout, with rest (the gateway,
// metrics, groups and log sections) appended; it returns the config's path.
func (f *Fleet) WriteConfigT(t testing.TB, dir, judge string, checkTimeout time.Duration, rest string) string {
	t.Helper()
	list, geo := f.WriteFilesT(t, dir)
	cfg := fmt.Sprintf(`database: %s
sources:
  - {name: fleet, url: "file://%s", format: auto}
probe:
  judges: [%s/get]
  timeout: %v
  interval: 1m
  failing-interval: 2s
  geoip: %s
  geoip6: ""
`, filepath.Join(dir, "pp.db"), list, judge, checkTimeout, geo) + rest
	path := filepath.Join(dir, "proxypool.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatalf("writing the daemon's config: %v", err)
	}
	return path
}

func writeFile(path string, fill func(*bufio.Writer)) error {
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	fh, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	w := bufio.NewWriter(fh)
	fill(w)
	err = w.Flush()
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
