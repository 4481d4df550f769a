package httpproxy

import (
	"net/http"
	"testing"
)

func TestCredentials(t *testing.T) {
	req, _ := http.NewRequest("GET", "http://x/", nil)
	req.Header.Set("Proxy-Authorization", "Basic "+"dXNlci1jb3VudHJ5LXVzOnB3")
	u, p, ok := Credentials(req)
	if !ok || u != "user-country-us" || p != "pw" {
		t.Fatalf("%q %q %v", u, p, ok)
	}
}
