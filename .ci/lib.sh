# Sourced by the scripts in .ci/: makes sure this machine has what dvfs
# needs, installing it when it does not. Safe to run again.

set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GO_WANT=$(awk '/^go /{print $2}' "$ROOT/go.mod")

log() { printf '==> %s\n' "$*" >&2; }

# apt_install installs the Debian packages that are not installed yet.
apt_install() {
	local missing=()
	for p in "$@"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# Wait for the dpkg lock instead of failing: a fresh machine may be
	# installing its own updates when CI starts.
	apt-get -o DPkg::Lock::Timeout=600 update -qq
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

go_ok() {
	command -v go >/dev/null 2>&1 || return 1
	local have
	have=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
	[ -n "$have" ] && [ "$(printf '%s\n%s\n' "$GO_WANT" "$have" | sort -V | head -1)" = "$GO_WANT" ]
}

# ensure_go puts a Go toolchain of at least go.mod's version on PATH. Debian's
# golang-go is older, so when no such Go is installed the toolchain is taken
# from the Go module proxy (golang.org/toolchain) with whatever Go is there.
ensure_go() {
	export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"
	go_ok && return 0
	command -v go >/dev/null 2>&1 || apt_install golang-go ca-certificates
	log "fetching Go $GO_WANT from the module proxy"
	local tmp dir
	tmp=$(mktemp -d)
	(cd "$tmp" && go mod init fetch >/dev/null 2>&1 &&
		GOFLAGS=-mod=mod go mod download "golang.org/toolchain@v0.0.1-go$GO_WANT.linux-amd64")
	dir=$(go env GOMODCACHE)/golang.org/toolchain@v0.0.1-go$GO_WANT.linux-amd64
	chmod +x "$dir"/bin/* "$dir"/pkg/tool/*/* 2>/dev/null || true
	export PATH="$dir/bin:$PATH" GOROOT="$dir"
	rm -rf "$tmp"
	go_ok || { echo "could not get Go $GO_WANT" >&2; exit 1; }
}

# go_tool installs the Go program NAME from PKG at VERSION into ~/go/bin
# (on PATH after ensure_go), unless that version is there already.
go_tool() {
	local name=$1 pkg=$2 version=$3 bin="$HOME/go/bin/$1"
	if [ -x "$bin" ] && go version -m "$bin" 2>/dev/null | grep -q "^[[:space:]]mod[[:space:]].*[[:space:]]$version[[:space:]]"; then
		return 0
	fi
	log "installing $name $version"
	(cd / && GOBIN="$HOME/go/bin" go install "$pkg@$version")
}

# ensure_deps installs the packages the tests and the demo use.
ensure_deps() {
	ensure_go
	apt_install ca-certificates
	(cd "$ROOT" && go mod download)
}
