#!/usr/bin/env bash
# OFREP bulk evaluation of 50 flags under wrk, Sextant vs Unleash Edge
# (offline mode, same flags as an Unleash features file, /api/frontend),
# one after the other in the same run on loopback.
#
# usage: bench/ofrep/run.sh [EDGE_BIN]   (EDGE_BIN built by ../shared/peers/install-unleash-edge)
# env: DURATION (default 20s), CONNECTIONS (64), THREADS (2)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
edge=${1:-}
duration=${DURATION:-20s}
conns=${CONNECTIONS:-64}
threads=${THREADS:-2}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }

(cd "$root" && cargo build -q --release -p sextant)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
python3 "$here/gen.py" "$work"

source "$root/bench/lib.sh"
admin=$(bench_token)
start_sextant "$work" "$admin"
pids+=("$SEXTANT_PID")
url=$SEXTANT_URL
api() { curl -sf -X "$1" "$url$2" -H "authorization: Bearer $admin" -H 'content-type: application/json' -d "$3"; }
api POST /api/v1/workspaces '{"key":"bench","environments":[{"key":"production","production":true}]}' >/dev/null
while read -r body; do api POST /api/v1/workspaces/bench/flags "$body" >/dev/null; done <"$work/sextant-flags.jsonl"
client=$(api POST /api/v1/tokens '{"name":"bench","kind":"client","workspace":"bench","environment":"production"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
n=$(curl -sf -X POST "$url/ofrep/v1/evaluate/flags" -H "authorization: Bearer $client" -H 'content-type: application/json' \
  -d '{"context":{"targetingKey":"u1"}}' | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["flags"]))')
echo "sextant: $n flags in the bulk response"
echo "sextant RSS before load: $(rss_kib "${pids[0]}") KiB"
sextant=$(TOKEN=$client wrk -t"$threads" -c"$conns" -d"$duration" -s "$here/sextant.lua" "$url" | grep '^RESULT')
echo "sextant RSS after load: $(rss_kib "${pids[0]}") KiB"
echo "sextant: $sextant"
kill "${pids[0]}"

if [ -n "$edge" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  ftoken='*:development.frontend0123456789abcdef'
  "$edge" --interface 127.0.0.1 --port "$port" offline --bootstrap-file "$work/unleash-features.json" \
    --client-tokens '*:development.client0123456789abcdef' --frontend-tokens "$ftoken" >"$work/edge.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/internal-backstage/health" >/dev/null 2>&1 && break; sleep 0.1; done
  n=$(curl -sf -X POST "http://127.0.0.1:$port/api/frontend" -H "authorization: $ftoken" -H 'content-type: application/json' \
    -d '{"userId":"u1","properties":{"tier":"gold"}}' | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["toggles"]))')
  echo "edge: $n toggles in the response for a gold user"
  # The same load script, aimed at Edge's frontend API and body shape.
  sed -e 's#"/ofrep/v1/evaluate/flags"#"/api/frontend"#' \
    -e 's#{"context":{"targetingKey":"user-%d","tier":"silver","appVersion":"4.1.9"}}#{"userId":"user-%d","properties":{"tier":"silver","appVersion":"4.1.9"}}#' \
    -e 's#"Bearer " .. os.getenv("TOKEN")#os.getenv("TOKEN")#' "$here/sextant.lua" >"$work/edge.lua"
  edge_result=$(TOKEN=$ftoken wrk -t"$threads" -c"$conns" -d"$duration" -s "$work/edge.lua" "http://127.0.0.1:$port" | grep '^RESULT')
  echo "edge: $edge_result"
  s=$(sed -n 's/.*rps=\([0-9]*\).*/\1/p' <<<"$sextant"); e=$(sed -n 's/.*rps=\([0-9]*\).*/\1/p' <<<"$edge_result")
  python3 -c "print(f'ratio sextant/edge requests per second: {$s/$e:.2f}')"
fi
