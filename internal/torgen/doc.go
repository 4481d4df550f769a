// Package torgen turns discovered Tor relays into running, geo-pinned tor
// instances: relays → usable exits → configured groups → slots with stable
// ports → /etc/tor/torrc.<port> files → a Runner that makes the running set
// equal to the wanted one (systemd's tor@<port>.service through
// internal/units, or supervised child processes for `proxypoold run`).
// Each instance is then an upstream of type tor in the pool (Upstreams).
package torgen
