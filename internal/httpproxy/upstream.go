package httpproxy

import (
	"encoding/base64"
	"net/http"
)

// UpstreamProxy makes an Exchange's Up a forward proxy rather than a
// tunnel to the origin: the request goes to it in absolute form
// ("GET http://host/path HTTP/1.1"), as a browser configured with that
// proxy sends it, with the proxy's own credentials. It is how the gateway
// uses an HTTP upstream that forwards requests but refuses CONNECT.
type UpstreamProxy struct {
	User, Pass string // Basic Proxy-Authorization; none when User is ""
}

// target is the request-target the upstream proxy gets: the absolute URI
// without userinfo (credentials in a URL are not sent, RFC 9110 §4.2.4).
func (p *UpstreamProxy) target(req *http.Request) string {
	return "http://" + req.URL.Host + req.URL.RequestURI()
}

// authorization is the Proxy-Authorization header line, or "".
func (p *UpstreamProxy) authorization() string {
	if p.User == "" {
		return ""
	}
	return "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(p.User+":"+p.Pass)) + "\r\n"
}
