#!/usr/bin/env bash
# Build dist/proxypool_<version>_<arch>.deb from nfpm.yaml, then run lintian.
#   packaging/deb.sh            build binaries (go build ./cmd/...) and package
#   NO_BUILD=1 packaging/deb.sh  package what is already in bin/
# Needs: go (cgo), nfpm v2.45.0 (installed here if missing), lintian (optional).
set -euo pipefail
cd "$(dirname "$0")/.."
NFPM_VERSION=v2.45.0
export CGO_ENABLED=1

if [ "${NO_BUILD:-0}" != 1 ]; then
	for c in proxypoold proxypoolctl; do
		ls "cmd/$c"/*.go >/dev/null 2>&1 || { echo "deb: cmd/$c has no Go files yet: nothing to package as /usr/bin/$c" >&2; exit 1; }
	done
	mkdir -p bin
	VERSION_LD=$(git describe --tags --always --dirty 2>/dev/null || echo 0.0.0)
	# PIE + full RELRO, stripped: what Debian's hardening checks expect.
	go build -trimpath -buildmode=pie \
		-ldflags "-s -w -linkmode=external -extldflags=-Wl,-z,relro,-z,now -X main.version=$VERSION_LD" \
		-o bin/ ./cmd/proxypoold ./cmd/proxypoolctl
fi
for b in bin/proxypoold bin/proxypoolctl; do
	[ -x "$b" ] || { echo "deb: $b missing (go build ./cmd/... failed?)" >&2; exit 1; }
done

# A Debian version: the last tag (v1.2.3 → 1.2.3), else 0.0.0, plus
# ~git<date>.<sha> for untagged commits (sorts before the release).
tag=$(git describe --tags --abbrev=0 2>/dev/null || true)
base=${tag#v}; base=${base:-0.0.0}
if [ -z "$tag" ] || [ -n "$(git describe --tags --exact-match 2>/dev/null || echo x)" ]; then
	base="$base~git$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || date +%Y%m%d).$(git rev-parse --short=8 HEAD 2>/dev/null || echo 0)"
fi
export PROXYPOOL_VERSION=${PROXYPOOL_VERSION:-$base}
export PROXYPOOL_ARCH=${PROXYPOOL_ARCH:-$(go env GOARCH)}

mkdir -p dist/man
# The installed /etc/proxypool/proxypool.yaml: etc/proxypool/proxypool.yaml
# is also `make run`'s development config (store under ./var, a demo source,
# a local judge), so apply its "packaged:" notes. Relative paths would
# resolve against / under systemd, which ProtectSystem=strict makes
# read-only.
awk '
	/^[a-z]/ { insrc = ($0 ~ /^sources:/) }
	insrc && /^sources:/ { print "# Lists `proxypoold refresh` fetches; none by default. Example:"; print "sources: []"; next }
	insrc && !/^[[:space:]]*#/ && NF { sub(/^  /, ""); print "#" $0; next }
	/^database: / { print "database: /var/lib/proxypool/proxypool.db"; next }
	/^  judges:$/ { print "  judges:"; print "    - http://httpbin.org/get"; print "    - https://ifconfig.me/all.json"; print "    - https://api.ipify.org"; injudges = 1; next }
	injudges && /^    - / { next }
	{ injudges = 0 }
	/^      url: http:\/\/127\.0\.0\.1:18080\/get/ { print "      url: http://httpbin.org/get   # the demo target: your site here"; next }
	/^  geoip: / { print "  geoip: /usr/share/tor/geoip"; next }
	/^  geoip6: / { sub(/""/, "/usr/share/tor/geoip6"); print; next }
	{ print }
' etc/proxypool/proxypool.yaml >dist/proxypool.yaml
if grep -nE '^[^#]*(\./var|127\.0\.0\.1:18080)' dist/proxypool.yaml; then
	echo "deb: dist/proxypool.yaml still has development paths (etc/proxypool/proxypool.yaml changed shape?)" >&2
	exit 1
fi
bin/proxypoold --config dist/proxypool.yaml torgen --dry-run >/dev/null 2>&1 ||
	{ bin/proxypoold --config dist/proxypool.yaml torgen --dry-run; echo "deb: dist/proxypool.yaml does not load" >&2; exit 1; }
for m in packaging/man/*.[0-9]; do gzip -n -9 <"$m" >"dist/man/$(basename "$m").gz"; done
# Native package changelog (Debian format), gzipped reproducibly; nfpm.yaml
# installs dist/changelog.gz.
{
	echo "proxypool ($PROXYPOOL_VERSION) unstable; urgency=medium"
	echo
	git log -20 --format='  * %s' 2>/dev/null | cut -c1-78 || echo "  * build"
	echo
	echo " -- proxypool maintainers <proxypool@users.noreply.github.com>  $(date -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")"
} | gzip -n -9 >dist/changelog.gz  # nfpm.yaml takes it from there

NFPM=$(command -v nfpm || echo "$(go env GOPATH)/bin/nfpm")
if ! go version -m "$NFPM" 2>/dev/null | grep -q "nfpm/v2[[:space:]]*$NFPM_VERSION"; then
	(cd /tmp && GOFLAGS= go install "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION")
	NFPM="$(go env GOPATH)/bin/nfpm"
fi
deb="dist/proxypool_${PROXYPOOL_VERSION}_${PROXYPOOL_ARCH}.deb"
rm -f dist/proxypool_*.deb
"$NFPM" pkg --config nfpm.yaml --packager deb --target "$deb" >/dev/null
echo "deb: $deb ($(du -h "$deb" | cut -f1))"

if command -v lintian >/dev/null; then
	# No errors allowed; warnings are fixed or overridden with a reason
	# (packaging/debian/lintian-overrides).
	rc=0
	out=$(lintian --fail-on error,warning "$deb" 2>&1) || rc=$?
	out=$(grep -v "running with root privileges" <<<"$out" || true)
	[ -z "$out" ] || echo "$out"
	[ "$rc" = 0 ] || { echo "deb: lintian failed" >&2; exit 1; }
	echo "deb: lintian clean (no errors, no warnings)"
else
	echo "deb: lintian not installed, skipped (apt-get install lintian)"
fi
