# Shared by the bench scripts: start a release `sextant serve` on a free
# loopback port with a temp SQLite file and no per-token rate limit (a load
# generator uses one token). Sets SEXTANT_PID and SEXTANT_URL.
# usage: start_sextant WORKDIR ADMIN_TOKEN
start_sextant() {
  local work=$1 admin=$2
  SEXTANT_TOKEN_RATE_LIMIT=0 SEXTANT_LOG=warn SEXTANT_ADMIN_TOKEN=$admin "${CARGO_TARGET_DIR:-$root/target}/release/sextant" serve --listen 127.0.0.1:0 \
    --database-url "sqlite:$work/sextant.db" >"$work/out.log" 2>"$work/err.log" &
  SEXTANT_PID=$!
  SEXTANT_URL=
  for _ in $(seq 1 100); do
    SEXTANT_URL=$(sed -n 's/^sextant listening on \(http:[^ ]*\).*/\1/p' "$work/out.log" | head -n 1)
    [ -n "$SEXTANT_URL" ] && return 0
    sleep 0.1
  done
  cat "$work/err.log" >&2
  return 1
}

# Resident set size of a process in KiB.
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# A random admin token for a benchmark run.
bench_token() { echo "sx_admin_bench_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"; }
