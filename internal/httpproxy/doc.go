// Package httpproxy speaks the HTTP side of a forward proxy: reading CONNECT
// and absolute-URI requests under a header-size cap, Basic proxy
// credentials, the answers (200 Connection established, errors with an RFC
// 9209 Proxy-Status header and a one-line body), and forwarding one
// absolute-URI request over an already-open tunnel to its origin. The small
// proxy that dials targets itself for tests is internal/fleet/proxyserver.
//
// It has no dialing policy: which upstream carries a request, retries and
// relaying belong to the gateway.
package httpproxy
