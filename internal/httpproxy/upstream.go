package httpproxy

import (
	"encoding/base64"
	"errors"
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

// errUpstreamAuth: the upstream proxy answered 407. Relayed, the client
// would take it for the gateway asking for its own credentials.
var errUpstreamAuth = errors.New("upstream proxy refused its credentials (407)")

// refused is errUpstreamAuth for an upstream proxy's 407; nil otherwise
// (and for a tunnel, p nil, where a 407 is the origin's own answer).
func (p *UpstreamProxy) refused(resp *http.Response) error {
	if p != nil && resp.StatusCode == http.StatusProxyAuthRequired {
		return errUpstreamAuth
	}
	return nil
}
