#!/usr/bin/env bash
# Installs the Debian 12 packages that Flotilla's build, tests and benchmarks need.
# Idempotent: when everything is present it only checks and returns.
set -euo pipefail

packages=(
    build-essential cmake pkg-config clang-format
    libuv1-dev libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler liblmdb-dev
    libcmocka-dev
    etcd-client etcd-server
    python3 gnuplot-nox
    python3-etcd3
)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
# The npm etcd3 acceptance test needs node and npm; any install of them will
# do (a NodeSource nodejs bundles npm), so look for the commands, not packages.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}" >&2
    sudo_cmd=()
    [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The npm etcd3 client for tests/integration/test_accept_node_etcd3.py, at the
# version package-lock.json pins. npm writes node_modules/.package-lock.json
# on install: reinstall only when it is missing or older than the lock file.
# Without the registry this warns and goes on (the build and `make run` do not
# need it); that test then fails and says why.
node_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/integration/node"
installed_lock="$node_dir/node_modules/.package-lock.json"
if [ ! -f "$installed_lock" ] || [ "$node_dir/package-lock.json" -nt "$installed_lock" ]; then
    echo "install-deps: npm ci --prefix $node_dir" >&2
    if ! npm ci --prefix "$node_dir" --no-audit --no-fund --loglevel=error >/dev/null; then
        echo "install-deps: WARNING: npm ci failed (is the npm registry reachable?);" \
             "integration.test_accept_node_etcd3 will fail until it succeeds" >&2
    fi
fi
