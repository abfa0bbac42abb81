-- OFREP bulk evaluation with a different user per request.
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"userId":"user-%d","properties":{"tier":"silver","appVersion":"4.1.9"}}', n)
  return wrk.format("POST", "/api/frontend", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = os.getenv("TOKEN"),
  }, body)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.0f p50_us=%d p99_us=%d non2xx=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
