#!/usr/bin/env bash
# Idle RSS of `sextant serve` (release) after start with N flags (default
# 1,000, each with three rules), measured after the flags are created and
# the server has been idle for a few seconds.
# usage: bench/rss/run.sh [N]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
n=${1:-1000}
(cd "$root" && cargo build -q --release -p sextant)
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
source "$root/bench/lib.sh"
admin=$(bench_token)
start() { start_sextant "$work" "$admin"; pid=$SEXTANT_PID; url=$SEXTANT_URL; }
rss() { rss_kib "$pid"; }
start
echo "RSS after start, empty database: $(rss) KiB"
python3 - "$n" "$url" "$admin" <<'PY'
import json, sys, urllib.request
n, url, token = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def post(path, body):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    urllib.request.urlopen(req).read()
for i in range(n):
    post("/api/v1/workspaces/default/flags", {"flag": {
        "key": f"flag-{i}", "kind": "boolean",
        "variations": [{"key": "on", "value": True}, {"key": "off", "value": False}],
        "hypothesis": {"operational": True, "reason": "rss benchmark"},
        "environments": {"production": {"enabled": True, "off_variation": "off", "rules": [
            {"conditions": [{"attribute": "tier", "op": "in", "values": ["gold", "platinum"]}], "serve": {"variation": "on"}},
            {"conditions": [{"attribute": "appVersion", "op": "semver_gt", "values": ["4.2.0"]}], "serve": {"variation": "on"}},
            {"rollout": {"weight": 10000}, "serve": {"variation": "on"}}],
            "default_serve": {"variation": "off"}}}}})
PY
sleep 3
echo "RSS after creating $n flags: $(rss) KiB"
kill "$pid"; wait "$pid" 2>/dev/null || true
start
sleep 3
echo "RSS after restart with $n flags (idle): $(rss) KiB"
