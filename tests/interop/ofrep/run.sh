#!/usr/bin/env bash
# Starts a real `sextant serve` on a free loopback port with a temp SQLite
# file, then runs interop.mjs (the official OpenFeature OFREP provider)
# against it. Installs Node.js and the npm packages when missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "installing Node.js from Debian's packages"
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -d "$here/node_modules/@openfeature/ofrep-provider" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --silent)
fi

bin=${SEXTANT_BIN:-$root/target/debug/sextant}
[ -x "$bin" ] || (cd "$root" && cargo build -q -p sextant)

work=$(mktemp -d)
token="sx_admin_interop_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
SEXTANT_ADMIN_TOKEN=$token "$bin" serve --listen 127.0.0.1:0 --database-url "sqlite:$work/sextant.db" \
  >"$work/out.log" 2>"$work/err.log" &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

url=
for _ in $(seq 1 100); do
  url=$(sed -n 's/^sextant listening on \(http:[^ ]*\).*/\1/p' "$work/out.log" | head -n 1)
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/err.log" >&2; echo "sextant serve exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$work/err.log" >&2; echo "sextant serve did not start" >&2; exit 1; }

cd "$here"
SEXTANT_URL=$url SEXTANT_ADMIN_TOKEN=$token node interop.mjs
