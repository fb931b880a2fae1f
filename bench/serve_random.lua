-- wrk script for bench/serve.py: GET /frames/<random k>.jpg, the same sequence
-- for every server (seeded per thread), and a JSON summary on the last line.
local frames = tonumber(os.getenv("FRAMES"))
local seed = tonumber(os.getenv("SEED") or "1")
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  math.randomseed(seed * 7919 + id)
end

function request()
  return wrk.format("GET", "/frames/" .. math.random(0, frames - 1) .. ".jpg")
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
